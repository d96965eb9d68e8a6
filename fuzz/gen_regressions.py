#!/usr/bin/python3
"""Hand-made hostile inputs found by reading the parsers (the fuzzers' own
findings are saved as they were found). Run from the repository root:
    python3 fuzz/gen_regressions.py
Standard library only. Each file is replayed by tests/test_fuzz_regressions.c."""
import io, os, struct, zipfile, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions")


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- pickle opcodes ----
def s(x):  # BINUNICODE
    b = x.encode()
    return b"X" + struct.pack("<I", len(b)) + b

def i(n):  # LONG1 (any 64-bit integer)
    b = n.to_bytes(9, "little", signed=True).rstrip(b"\0") or b"\0"
    if b[-1] & 0x80 and n >= 0:
        b += b"\0"
    return b"\x8a" + bytes([len(b)]) + b

def glob(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"

def tup(*items):
    return b"(" + b"".join(items) + b"t"

ODICT = glob("collections", "OrderedDict") + b")R"

def tensor(key, numel, size, stride, storage="FloatStorage", offset=0):
    st = tup(s("storage"), glob("torch", storage), s(key), s("cpu"), i(numel)) + b"Q"
    return glob("torch._utils", "_rebuild_tensor_v2") + tup(st, i(offset), tup(*map(i, size)), tup(*map(i, stride)),
                                                         b"\x89", ODICT) + b"R"

def state_dict(items):
    """items: list of (name bytes-producing pickle of the value)."""
    return b"\x80\x02" + ODICT + b"(" + b"".join(s(k) + v for k, v in items) + b"u."

def pth(pickle, entries, compress=zipfile.ZIP_STORED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compress) as z:
        z.writestr("archive/data.pkl", pickle)
        for k, v in entries.items():
            z.writestr("archive/data/" + k, v)
        z.writestr("archive/version", "3\n")
    return b.getvalue()


# a broadcast (stride 0) tensor whose shape product overflows int64: 2^40 x 2^40
out("pth", "stride0-shape-overflow.pth",
    pth(state_dict([("a", tensor("0", 1, (1 << 40, 1 << 40), (0, 0)))]), {"0": b"\0\0\0\0"}))
# a broadcast tensor of 2^34 floats (64 GiB) on a one-element storage
out("pth", "stride0-64gib.pth",
    pth(state_dict([("a", tensor("0", 1, (1 << 17, 1 << 17), (0, 0)))]), {"0": b"\0\0\0\0"}))

# one 1 MiB deflated storage (1 KiB in the file) named by 4096 tensors: each
# is a converted copy (U8 -> float32), 4 GiB in all from a small file
big = b"\0" * (1 << 20)
pkl = state_dict([("t%d" % n, (tensor("0", 1 << 20, (1 << 20,), (1,), "ByteStorage") if n == 0 else b"h\x01"))
                  for n in range(4096)])
# memoize the first tensor (BINPUT 1 right after it) so the others are BINGET 1
pkl = pkl.replace(tensor("0", 1 << 20, (1 << 20,), (1,), "ByteStorage"),
                  tensor("0", 1 << 20, (1 << 20,), (1,), "ByteStorage") + b"q\x01", 1)
out("pth", "aliases-4gib.pth", pth(pkl, {"0": big}, zipfile.ZIP_DEFLATED))


def overlapping_zip_bomb(n_entries):
    """n central directory entries (archive/data/0..n-1) sharing one deflated
    local entry of 16 MiB of zeros: 16 MiB x n inflated from ~16 KiB."""
    raw = b"\0" * (16 << 20)
    comp = zlib.compress(raw, 9)[2:-4]
    crc = zlib.crc32(raw)
    pkl = state_dict([("t%d" % k, tensor(str(k), 1 << 24, (1 << 24,), (1,), "ByteStorage"))
                      for k in range(n_entries)])
    files, cd = b"", b""
    def local(name, data, method, crc_, usize):
        return struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, method, 0, 0, crc_, len(data), usize,
                           len(name), 0) + name + data
    def central(name, off, clen, method, crc_, usize):
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, method, 0, 0, crc_, clen, usize,
                           len(name), 0, 0, 0, 0, 0, off) + name
    name = b"archive/data.pkl"
    cd += central(name, len(files), len(pkl), 0, zlib.crc32(pkl), len(pkl))
    files += local(name, pkl, 0, zlib.crc32(pkl), len(pkl))
    off = len(files)
    files += local(b"archive/data/0", comp, 8, crc, len(raw))
    for k in range(n_entries):
        cd += central(b"archive/data/%d" % k, off, len(comp), 8, crc, len(raw))
    eocd = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, n_entries + 1, n_entries + 1, len(cd), len(files), 0)
    return files + cd + eocd

out("pth", "overlapping-entries-zip-bomb.pth", overlapping_zip_bomb(256))


# ---- legacy (non-zip) torch.save files: header pickles, the object, keys, records ----
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + bytes.fromhex("6cfc9c46f9206aa85019") + b"."

def legacy(tensors, keys, records, version=1001, little=True):
    """tensors: (name, key, declared numel, view pickle or None); records: (numel field, data bytes)."""
    info = b"\x80\x02}(" + s("protocol_version") + i(version) + s("little_endian") + (b"\x88" if little else b"\x89") + \
        s("type_sizes") + b"}(" + s("short") + i(2) + s("int") + i(4) + s("long") + i(4) + b"uu."
    items = []
    for name, key, numel, view in tensors:
        st = tup(s("storage"), glob("torch", "FloatStorage"), s(key), s("cpu"), i(numel), view or b"N") + b"Q"
        items.append((name, glob("torch._utils", "_rebuild_tensor_v2") +
                      tup(st, i(0), tup(i(numel)), tup(i(1)), b"\x89", ODICT) + b"R"))
    keys_pkl = b"\x80\x02](" + b"".join(s(k) for k in keys) + b"e."
    recs = b"".join(struct.pack("<q", n) + d for n, d in records)
    return LEGACY_MAGIC + b"\x80\x02" + i(version) + b"." + info + state_dict(items) + keys_pkl + recs

F4 = b"\0\0\x80\x3f" * 4  # four 1.0f
out("pth", "legacy-count-mismatch.pth", legacy([("a", "0", 4, None)], ["0"], [(5, F4 + F4[:4])]))
out("pth", "legacy-count-2pow62.pth", legacy([("a", "0", 4, None)], ["0"], [(1 << 62, F4)]))
out("pth", "legacy-truncated-data.pth", legacy([("a", "0", 4, None)], ["0"], [(4, F4[:8])]))
out("pth", "legacy-key-twice.pth", legacy([("a", "0", 4, None)], ["0", "0"], [(4, F4), (4, F4)]))
out("pth", "legacy-unused-key.pth", legacy([("a", "0", 4, None)], ["0", "1"], [(4, F4), (4, F4)]))
out("pth", "legacy-no-data.pth", legacy([("a", "0", 4, None)], [], []))
out("pth", "legacy-view.pth", legacy([("a", "0", 4, tup(s("1"), i(0), i(16)))], ["0"], [(4, F4)]))
out("pth", "legacy-two-sizes.pth", legacy([("a", "0", 4, None), ("b", "0", 2, None)], ["0"], [(4, F4)]))
out("pth", "legacy-big-endian.pth", legacy([("a", "0", 4, None)], ["0"], [(4, F4)], little=False))
out("pth", "legacy-unknown-version.pth", legacy([("a", "0", 4, None)], ["0"], [(4, F4)], version=1000))
out("pth", "legacy-numel-2pow50.pth", legacy([("a", "0", 1 << 50, None)], ["0"], [(4, F4)]))
print("regressions written to", ROOT)


# ---- pickles that try to run code: each must be refused by name ----
def evil(name, pickle_bytes):
    out("pth", "evil-" + name + ".pth", pth(pickle_bytes, {}))

evil("global-os-system", b"\x80\x02" + glob("os", "system") + s("echo pwned") + b"\x85R.")
evil("stack-global-builtins-eval", b"\x80\x04" + s("builtins") + s("eval") + b"\x93" + s("1+1") + b"\x85R.")
evil("inst-opcode", b"\x80\x02(" + s("x") + b"ios\nsystem\n.")
evil("obj-opcode", b"\x80\x02(" + glob("collections", "OrderedDict") + b"o.")
evil("newobj-opcode", b"\x80\x02" + glob("collections", "OrderedDict") + b")\x81.")
evil("ext1-opcode", b"\x80\x02\x82\x01.")
evil("reduce-storage-type", b"\x80\x02" + glob("torch", "FloatStorage") + b")R.")
evil("ordereddict-with-arguments", b"\x80\x02" + glob("collections", "OrderedDict") + tup(s("x")) + b"R.")
