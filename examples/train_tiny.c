/* Trains a small tokenizer for a few steps through the public API alone
 * (optvq/train.h), printing each step, then reports what the model makes of
 * the images it was trained on.
 *
 *     cc train_tiny.c $(pkg-config --cflags --libs optvq) -o train_tiny
 *     ./train_tiny CONFIG.yaml RUN_DIR [DATA]
 *
 * DATA defaults to fashion-mnist (Debian's dataset-fashion-mnist). */
#include <optvq/optvq.h>
#include <optvq/train.h>

#include <stdio.h>

static int on_progress(const optvq_train_report *r, void *user)
{
    (void)user;
    if (r->event == OPTVQ_TRAIN_STEP)
        printf("step %lld/%lld  loss %.4f  codes used %lld/%lld\n", (long long)r->step, (long long)r->total_steps,
               r->loss, (long long)r->codes_used, (long long)r->n_e);
    else
        printf("epoch %lld done: perplexity %.1f over %lld training images\n", (long long)r->epoch, r->perplexity,
               (long long)r->train_images);
    return 0; /* nonzero would stop the run after this step */
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONFIG.yaml RUN_DIR [DATA]\n", argv[0]);
        return 2;
    }
    optvq_train_options o;
    optvq_train_options_default(&o);
    o.config = argv[1];
    o.out = argv[2];
    o.data = argc > 3 ? argv[3] : "fashion-mnist";
    o.limit = 64;      /* the first 64 images */
    o.batch_size = 16; /* 4 steps an epoch */
    o.epochs = 1;
    o.val_limit = 0;   /* no held-out evaluation */
    o.force = 1;       /* start over if RUN_DIR holds a run */
    optvq_train *t = NULL;
    if (optvq_train_create(&o, &t) != OPTVQ_OK || optvq_train_run(t, on_progress, NULL) != OPTVQ_OK) {
        fprintf(stderr, "train_tiny: %s\n", optvq_last_error());
        optvq_train_free(t);
        return 1;
    }
    optvq_model_info info;
    optvq_model_get_info(optvq_train_model(t), &info);
    printf("trained: %lld parameters, %lld codes; the model is in %s (optvq encode --model %s)\n",
           (long long)info.params_total, (long long)info.n_e, o.out, o.out);
    optvq_train_free(t);
    return 0;
}
