#!/usr/bin/python3
"""Reference outputs for tests/test_image.c (run with Debian's /usr/bin/python3).

Needs python3-pil, python3-skimage (the photographs), python3-opencv (cv2),
python3-torch and python3-torchvision.

The reference's validation preprocessing (zbr17/OptVQ, src/optvq/data/dataset.py
ImageNetDataset.__getitem__ with preprocessor.imagenet_preprocessor(is_train=False)):

    image = Image.open(path); image = image.convert("RGB") if mode != "RGB"
    image = np.array(image).astype("uint8")
    A.Compose([A.SmallestMaxSize(max_size=resize), A.CenterCrop(resize, resize)])
    image = (image / 255).astype(np.float32); CHW; Normalize(mean=0.5, std=0.5)

albumentations is not packaged in Debian, so its two transforms are written out
here exactly as albumentations implements them:
  SmallestMaxSize: scale = max_size / min(h, w); new = round(side * scale)
                   (Python round, half to even); cv2.resize(..., INTER_LINEAR)
  CenterCrop:      y0 = (h - ch) // 2, x0 = (w - cw) // 2

The 'plain' preprocessing (configs/mnsit, configs/cifar10: torchvision MNIST
images through preprocessor.plain_preprocessor(32)) is
  ToTensor -> Normalize((0.5,), (0.5,)) -> transforms.Resize(32)   (on the tensor)
run here with the real torchvision. Writes everything to tests/ref/image/.
"""
import gzip
import os
import sys

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "ref", "image")
SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def smallest_max_size(img, max_size):
    h, w = img.shape[:2]
    scale = max_size / float(min(h, w))
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return img
    return cv2.resize(img, dsize=(nw, nh), interpolation=cv2.INTER_LINEAR)


def center_crop(img, ch, cw):
    h, w = img.shape[:2]
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return img[y0:y0 + ch, x0:x0 + cw]


def reference_val(path, size):
    image = Image.open(path)
    if not image.mode == "RGB":
        image = image.convert("RGB")
    image = np.array(image).astype("uint8")
    image = center_crop(smallest_max_size(image, size), size, size)
    image = (image / 255).astype(np.float32)
    image = torch.from_numpy(image).permute(2, 0, 1)
    image = transforms.Normalize(mean=(0.5,), std=(0.5,))(image)
    return image.numpy()


def save(name, arr):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(arr))


def main():
    os.makedirs(OUT, exist_ok=True)
    # --- photographs (crops keep the folder small) ---
    chelsea = Image.open(os.path.join(SKIMAGE, "chelsea.png")).convert("RGB")
    chelsea.crop((120, 40, 331, 190)).save(os.path.join(OUT, "chelsea_crop.png"))  # 211 x 150
    coffee = Image.open(os.path.join(SKIMAGE, "coffee.png")).convert("RGB")
    coffee.crop((150, 60, 450, 360)).resize((150, 191), Image.BILINEAR).save(
        os.path.join(OUT, "coffee_crop.jpg"), quality=90)  # 150 x 191, JPEG
    camera = Image.open(os.path.join(SKIMAGE, "camera.png"))  # grey
    camera.crop((180, 40, 300, 130)).save(os.path.join(OUT, "camera_crop.png"))  # 120 x 90, L
    for name in ["chelsea_crop.png", "coffee_crop.jpg", "camera_crop.png"]:
        path = os.path.join(OUT, name)
        stem = name.split(".")[0]
        if name.endswith(".jpg"):  # decoder parity: PIL's pixels, stored losslessly
            Image.open(path).convert("RGB").save(os.path.join(OUT, f"{stem}_decoded.png"))
        for size in (64, 37):
            save(f"{stem}_val{size}.npy", reference_val(path, size))

    # --- cv2.resize INTER_LINEAR on random bytes: (h, w, c) -> (oh, ow) ---
    rng = np.random.default_rng(1234)
    cases = [(23, 31, 3, 40, 57), (40, 30, 3, 20, 15), (37, 50, 1, 11, 13),
             (19, 26, 1, 64, 50), (30, 44, 3, 17, 29), (50, 34, 3, 25, 17)]
    for i, (h, w, c, oh, ow) in enumerate(cases):
        a = rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)
        Image.fromarray(a[:, :, 0] if c == 1 else a).save(os.path.join(OUT, f"rand{i}.png"))
        r = cv2.resize(a[:, :, 0] if c == 1 else a, (ow, oh), interpolation=cv2.INTER_LINEAR)
        save(f"rand{i}_resize_{oh}x{ow}.npy", r.reshape(oh, ow, c).astype(np.int32))

    # --- PNG flavours decoded by PIL's convert("RGB") ---
    base = rng.integers(0, 256, size=(9, 13, 4), dtype=np.uint8)
    Image.fromarray(base, "RGBA").save(os.path.join(OUT, "rgba.png"))
    Image.fromarray(base[:, :, :2].copy(), "LA").save(os.path.join(OUT, "la.png"))
    pal = Image.fromarray(base[:, :, :3].copy(), "RGB").quantize(colors=12)
    pal.info["transparency"] = 3
    pal.save(os.path.join(OUT, "palette.png"), transparency=3)
    for name in ["rgba.png", "la.png", "palette.png"]:
        im = Image.open(os.path.join(OUT, name))
        save(name.replace(".png", "_rgb.npy"), np.array(im.convert("RGB")).astype(np.int32))

    # --- plain preprocessing on the first Fashion-MNIST test images ---
    if os.path.exists(FMNIST):
        with gzip.open(FMNIST, "rb") as f:
            data = f.read()
        n = 8
        imgs = np.frombuffer(data, dtype=np.uint8, offset=16)[: n * 784].reshape(n, 28, 28)
        Image.fromarray(imgs.reshape(n * 28, 28)).save(os.path.join(OUT, "fmnist8.png"))
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,)),
                                 transforms.Resize(32)])
        out = np.stack([tf(Image.fromarray(im, "L")).numpy() for im in imgs])
        save("fmnist8_plain32.npy", out)
        # torchvision >= 0.17 antialiases tensors by default; for 28 -> 32 (upscaling) it
        # makes no difference beyond rounding, checked here:
        x = torch.from_numpy(imgs[:, None].astype(np.float32) / 255).sub(0.5).div(0.5)
        aa = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear",
                                             align_corners=False, antialias=True).numpy()
        print("plain: max |antialias - no antialias| =", float(np.abs(aa - out).max()))
    else:
        print("warning: Fashion-MNIST not installed, plain references skipped", file=sys.stderr)

    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1024:.0f} KiB, to {OUT}")


if __name__ == "__main__":
    main()
