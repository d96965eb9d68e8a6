/* Global average pooling, torch.nn.AdaptiveAvgPool2d((1, 1)) forward (PyTorch
 * takes the mean over (h, w)): y (nc) <- x (nc, hw), summed in double and
 * rounded once. */
#include "core/parallel.h"
#include "nn/nn.h"

void nn_global_avgpool_forward(float *y, const float *x, int64_t nc, int64_t hw)
{
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (nc * hw > 65536)
    for (int64_t c = 0; c < nc; c++) {
        double s = 0.0;
        for (int64_t j = 0; j < hw; j++)
            s += x[c * hw + j];
        y[c] = (float)(s / (double)hw);
    }
}
