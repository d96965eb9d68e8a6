#!/usr/bin/python3
"""optvq serve in a real browser: Debian's chromium, headless, driven by
python3-selenium. Run by tests/cli/serve_browser.sh, which starts the server
and prepares the CLI's answers for the same file:
    serve_browser.py URL IMAGE TOKENS.npy EVAL.json TOKENS_NEAREST.npy [SCREENSHOT.png]
Checks: the page loads with no console error and fetches nothing from another
origin; an uploaded image comes back with its images, PSNR and tokens equal
to 'optvq eval' / 'optvq reconstruct' on the same file; switching to nearest
changes the tokens to those of 'optvq reconstruct --assign nearest'; the toy
runs and animates."""
import json
import struct
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

url, image, tok_path, eval_path, tok_nearest_path = sys.argv[1:6]
screenshot = sys.argv[6] if len(sys.argv) > 6 else None
failures = []


def fail(msg):
    print("FAIL:", msg)
    failures.append(msg)


def read_npy_int64(path):
    raw = open(path, "rb").read()
    hl = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + hl].decode("latin1")
    assert "'<i8'" in header, header
    n = (len(raw) - 10 - hl) // 8
    return list(struct.unpack("<%dq" % n, raw[10 + hl:]))


def flat(tokens):
    return [t for head in tokens for row in head for t in row]


opts = Options()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1150,1500", "--no-first-run", "--disable-extensions"):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(60)
wait = WebDriverWait(driver, 60)
try:
    driver.get(url)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
    models = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "model")).options]
    if models[:1] != ["fashion-mnist-optvq"] or "fashion-mnist-vqbase" not in models:
        fail("the model selector offers %s" % models)

    # upload, wait for the reconstruction
    driver.find_element(By.ID, "file").send_keys(image)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-runs") == "1")
    last = driver.execute_script("return window.optvqLast")
    for img in ("img-original", "img-recon", "img-error"):
        w = driver.execute_script("const i = document.getElementById(arguments[0]);"
                                  "return i.complete ? i.naturalWidth : -1", img)
        if w != last["width"]:
            fail("%s shows an image %s wide, expected %s" % (img, w, last["width"]))
    ev = json.load(open(eval_path))
    if last["psnr"] != ev["psnr"] or last["ssim"] != ev["ssim"]:
        fail("PSNR/SSIM %r/%r, optvq eval says %r/%r" % (last["psnr"], last["ssim"], ev["psnr"], ev["ssim"]))
    shown = driver.find_element(By.ID, "psnr").text
    if shown != "%.2f dB" % ev["psnr"]:
        fail("the page shows PSNR %r, optvq eval says %.4f" % (shown, ev["psnr"]))
    if flat(last["tokens"]) != read_npy_int64(tok_path):
        fail("the tokens differ from optvq reconstruct's")
    heads = driver.find_elements(By.CSS_SELECTOR, "#token-maps canvas")
    if len(heads) != last["token_shape"][0]:
        fail("%d token maps for %d heads" % (len(heads), last["token_shape"][0]))
    if not driver.find_element(By.ID, "dl-tokens").get_attribute("href").startswith("blob:"):
        fail("no tokens download")
    if not driver.find_element(By.ID, "dl-recon").get_attribute("href").startswith("data:image/png;base64,"):
        fail("no reconstruction download")
    # the .npy the page offers holds the same tokens
    npy = driver.execute_async_script(
        "const done = arguments[0];"
        "window.optvqTokensNpy.arrayBuffer().then(b => done(Array.from(new Uint8Array(b))),"
        " e => done([]));")
    raw = bytes(npy)
    hl = struct.unpack("<H", raw[8:10])[0]
    if raw[:6] != b"\x93NUMPY" or (10 + hl) % 64 or "(1, %d, %d, %d)" % tuple(last["token_shape"]) not in raw[10:10 + hl].decode():
        fail("the tokens .npy has a bad header: %r" % raw[:10 + hl])
    elif list(struct.unpack("<%dq" % ((len(raw) - 10 - hl) // 8), raw[10 + hl:])) != flat(last["tokens"]):
        fail("the tokens .npy holds other tokens")
    if screenshot:
        driver.save_screenshot(screenshot)

    # switch to nearest: the tokens change, to the CLI's nearest tokens
    Select(driver.find_element(By.ID, "assign")).select_by_value("nearest")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-runs") == "2")
    near = driver.execute_script("return window.optvqLast")
    if near["assign"] != "nearest":
        fail("the answer after switching says assign=%s" % near["assign"])
    if flat(near["tokens"]) == flat(last["tokens"]):
        fail("switching to nearest did not change the tokens")
    if flat(near["tokens"]) != read_npy_int64(tok_nearest_path):
        fail("the nearest tokens differ from optvq reconstruct --assign nearest")

    # the toy: runs when its tab opens, then animates
    driver.find_element(By.ID, "tab-toy").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-toy-runs") == "1")
    toy = driver.execute_script("return {frames: window.optvqToy.frames.length,"
                                " last: window.optvqToy.frames[window.optvqToy.frames.length - 1]}")
    if toy["frames"] < 2:
        fail("the toy has %d frames" % toy["frames"])
    if not toy["last"]["optvq"]["used"] > toy["last"]["vanilla"]["used"]:
        fail("the toy's OptVQ uses %d codes, vanilla VQ %d" % (toy["last"]["optvq"]["used"], toy["last"]["vanilla"]["used"]))
    wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-toy-frame") or 0) >= 5)
    inked = driver.execute_script(
        "const c = document.getElementById('toy-optvq'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;")
    if inked < 1000:
        fail("the OptVQ toy canvas is nearly empty (%d pixels drawn)" % inked)
    if screenshot:
        wait.until(lambda d: d.find_element(By.ID, "toy-play").text == "Play")  # the animation's end
        driver.save_screenshot(screenshot.replace(".png", "-toy.png"))

    # nothing from elsewhere, no console error
    origin = url.rstrip("/")
    for name in driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"):
        if not (name.startswith(origin + "/") or name.startswith("data:") or name.startswith("blob:")):
            fail("the page fetched %s" % name)
    for entry in driver.get_log("browser"):
        if entry["level"] in ("SEVERE", "ERROR"):
            fail("console: %s" % entry["message"])
finally:
    driver.quit()
if failures:
    sys.exit(1)
print("serve browser ok")
