"""BTF ids of kernel functions, read on the host from the guest kernel's image.

A BPF tracing program is loaded with the BTF id of its target (``attach_btf_id``). Parsing the
4 MB /sys/kernel/btf/vmlinux in Python takes seconds under TCG, so the host does it once per
kernel: it takes the ``.BTF`` section of the ELF vmlinux (the bytes the guest's
/sys/kernel/btf/vmlinux shows) and records the id and the argument count of every function
(``BTF_KIND_FUNC`` and its ``FUNC_PROTO``). The vmlinux comes from the bzImage
(``/boot/vmlinuz-<ver>``: Debian 6.1's payload is XZ, decompressed here), or, for a payload
Python cannot read (Debian 6.12's is zstd), from the headers' ``vmlinux`` (Debian's 6.12 headers
ship one for module BTF, with the same ``.BTF``), else through the ``zstd`` tool. Modules'
split BTF comes from their ``.ko`` (``.ko.xz`` on 6.12). The guest checks the SHA-256 of its
/sys/kernel/btf/vmlinux against the one recorded here before it loads anything.

Format (include/uapi/linux/btf.h): a header (magic 0xeB9F, version, flags, hdr_len, type_off,
type_len, str_off, str_len), then ``struct btf_type`` records (name_off, info, size/type) each
followed by kind-specific data; type ids count from 1 in record order.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import zlib

from ..errors import OracleError

BTF_MAGIC = 0xEB9F
KIND_FUNC = 12
KIND_FUNC_PROTO = 13

#: Bytes of kind-specific data after each btf_type (``vlen`` = info & 0xffff).
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}          # INT, ARRAY, VAR, DECL_TAG
_PER_VLEN = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64


class Btf:
    """One parsed BTF blob: its functions (name -> (id, number of arguments)), and what a split
    BTF on top of it needs (type count, strings, the argument count of each FUNC_PROTO)."""

    def __init__(self, data: bytes, base: Btf | None = None) -> None:
        if len(data) < 24:
            raise OracleError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise OracleError(f"not BTF (magic 0x{magic:x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        #: a split BTF (a module's) numbers its types after its base's and its strings after the
        #: base's strings: a smaller offset names a base string
        first_id = base.ntypes + 1 if base is not None else 1
        base_str = len(base.strings) if base is not None else 0
        self.protos: dict[int, int] = dict(base.protos) if base is not None else {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        tid = first_id - 1
        funcs: list[tuple[int, int, int]] = []         # (id, name_off, proto id)
        while pos < end:
            tid += 1
            name_off, info, size_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            if kind == KIND_FUNC:
                funcs.append((tid, name_off, size_type))
            elif kind == KIND_FUNC_PROTO:
                self.protos[tid] = vlen
            pos += _FIXED.get(kind, 0) + _PER_VLEN.get(kind, 0) * vlen
        self.ntypes = tid
        self.funcs: dict[str, tuple[int, int]] = {}
        for fid, name_off, proto in funcs:
            if name_off < base_str and base is not None:
                table, off = base.strings, name_off
            else:
                table, off = self.strings, name_off - base_str
            name = table[off:table.index(b"\0", off)].decode()
            self.funcs.setdefault(name, (fid, self.protos.get(proto, 0)))


#: BTF kinds btf_distill_func_proto's __get_type_size looks through (btf_type_is_modifier):
#: TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
_MODIFIERS = {8, 9, 10, 11, 18}
KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64 = 1, 2, 4, 5, 6, 19
#: MAX_BPF_FUNC_ARGS (include/linux/bpf.h)
MAX_BPF_FUNC_ARGS = 12


class BtfTypes:
    """Every type of a BTF blob (and of its base, for a module's split BTF) as far as
    btf_distill_func_proto reads them: kind, size or referenced type, a FUNC_PROTO's parameters."""

    def __init__(self, data: bytes, base: BtfTypes | None = None) -> None:
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise OracleError(f"not BTF (magic 0x{magic:x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        base_str = len(base.strings) if base is not None else 0
        #: type id -> (kind, size_or_type, params); id 0 is void
        self.types: list[tuple[int, int, tuple[int, ...]]] = list(base.types) if base is not None else [(0, 0, ())]
        #: FUNC name -> its FUNC_PROTO's id, the first FUNC of each name (btf_find_by_name_kind)
        self.funcs: dict[str, int] = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            params: tuple[int, ...] = ()
            if kind == KIND_FUNC_PROTO:
                params = tuple(struct.unpack_from("<II", data, pos + 8 * i)[1] for i in range(vlen))
            elif kind == KIND_FUNC:
                if name_off < base_str and base is not None:
                    table, off = base.strings, name_off
                else:
                    table, off = self.strings, name_off - base_str
                self.funcs.setdefault(table[off:table.index(b"\0", off)].decode(), size_type)
            self.types.append((kind, size_type, params))
            pos += _FIXED.get(kind, 0) + _PER_VLEN.get(kind, 0) * vlen

    def type_size(self, tid: int) -> tuple[int, int]:
        """__get_type_size() (kernel/bpf/btf.c): (size, kind of the type behind the modifiers);
        size 0 for void, -1 for a type a trampoline cannot pass (-EINVAL)."""
        if tid == 0:
            return 0, 0
        kind, st, _ = self.types[tid]
        while kind in _MODIFIERS:
            tid = st
            if tid == 0:
                return 0, 0
            kind, st, _ = self.types[tid]
        if kind == KIND_PTR:
            return 8, kind
        if kind in (KIND_INT, KIND_ENUM, KIND_ENUM64, KIND_STRUCT, KIND_UNION):
            return st, kind
        return -1, kind

    def func_model(self, name: str) -> tuple[tuple[int, bool], ...] | None:
        """btf_distill_func_proto() (kernel/bpf/btf.c) for the FUNC ``name``: per argument its size
        and whether it is a struct (BTF_FMODEL_STRUCT_ARG); None where the kernel refuses (more than
        MAX_BPF_FUNC_ARGS arguments, a struct or unsized return type, variadic, an argument of no
        size or above 16 bytes) or there is no such FUNC."""
        proto = self.funcs.get(name)
        if proto is None:
            return None
        kind, ret_type, params = self.types[proto]
        if kind != KIND_FUNC_PROTO or len(params) > MAX_BPF_FUNC_ARGS:
            return None
        size, rkind = self.type_size(ret_type)
        if size < 0 or rkind in (KIND_STRUCT, KIND_UNION):
            return None
        out = []
        for i, t in enumerate(params):
            if i == len(params) - 1 and t == 0:
                return None  # variable args
            size, akind = self.type_size(t)
            if size <= 0 or size > 16:
                return None
            out.append((size, akind in (KIND_STRUCT, KIND_UNION)))
        return tuple(out)


def parse_btf(data: bytes) -> dict[str, tuple[int, int]]:
    """Every function of a BTF blob: name -> (BTF id, number of arguments)."""
    return Btf(data).funcs


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b\x08"


def bzimage_payload(image: bytes) -> bytes | None:
    """The compressed kernel of a bzImage, from its boot header (``payload_offset`` and
    ``payload_length``, boot protocol 2.08+, after the ``setup_sects`` real-mode sectors); None
    if ``image`` has no such header."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    version, = struct.unpack_from("<H", image, 0x206)
    if version < 0x208:
        return None
    setup_sects = image[0x1F1] or 4
    off, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + off
    return image[start:start + length] if start + length <= len(image) else None


def payload_kind(image: bytes) -> str:
    """``xz``, ``zstd``, ``gzip`` or ``unknown``: how the bzImage's kernel is compressed."""
    payload = bzimage_payload(image)
    if payload is not None:
        for kind, magic in (("xz", XZ_MAGIC), ("zstd", ZSTD_MAGIC), ("gzip", GZIP_MAGIC)):
            if payload.startswith(magic):
                return kind
    return "unknown"


def vmlinux_from_bzimage(image: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage (XZ, gzip, or zstd through the ``zstd`` tool)."""
    payload = bzimage_payload(image)
    kind = payload_kind(image)
    if kind == "zstd":
        from .kernels import decompress_zstd
        assert payload is not None
        return decompress_zstd(payload, "the kernel image")
    if payload is not None and kind in ("xz", "gzip"):
        image = payload
    xz = image.find(XZ_MAGIC)
    if xz >= 0:
        try:
            return lzma.LZMADecompressor().decompress(image[xz:])
        except lzma.LZMAError as e:
            raise OracleError(f"cannot decompress the kernel image (xz): {e}") from None
    gz = image.find(b"\x1f\x8b\x08\x00")
    if gz >= 0:
        try:
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(image[gz:])
        except zlib.error as e:
            raise OracleError(f"cannot decompress the kernel image (gzip): {e}") from None
    raise OracleError("kernel image payload is neither XZ, zstd nor gzip (decompress it by hand)")


def vmlinux_btf(vmlinuz: str, kbuild_vmlinux: str | None = None) -> bytes:
    """The ``.BTF`` of the kernel ``vmlinuz``: from the image, or from the headers' vmlinux
    (``kbuild_vmlinux``) when the image is zstd-compressed."""
    with open(vmlinuz, "rb") as f:
        image = f.read()
    if payload_kind(image) == "zstd" and kbuild_vmlinux and os.path.exists(kbuild_vmlinux):
        with open(kbuild_vmlinux, "rb") as f:
            return elf_section(f.read(), ".BTF")
    return elf_section(vmlinux_from_bzimage(image), ".BTF")


def elf_section(elf: bytes, wanted: str) -> bytes:
    """The bytes of section ``wanted`` of a 64-bit little-endian ELF file."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise OracleError("not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def header(n: int) -> tuple:
        return struct.unpack_from("<IIQQQQIIQQ", elf, shoff + n * shentsize)

    names = header(shstrndx)[4]
    for n in range(shnum):
        h = header(n)
        start = names + h[0]
        if elf[start:elf.index(b"\0", start)].decode() == wanted:
            return elf[h[4]:h[4] + h[5]]
    raise OracleError(f"the ELF file has no {wanted} section")


def kernel_btf(vmlinuz: str, cache_dir: str, modules: dict[str, str] | None = None,
               kbuild_vmlinux: str | None = None) -> dict:
    """``{"sha256", "funcs": {name: {"id", "nargs"}}}`` for the kernel ``vmlinuz``, cached per image.

    ``modules`` (module name -> .ko path): their functions too, from each module's split BTF
    (the ``.BTF`` section of the .ko, numbered after vmlinux's types), as ``module:name`` with
    ``"module"``: a program attaches to one with the module's BTF object (attach_btf_obj_fd).
    """
    st = os.stat(vmlinuz)
    cache = os.path.join(cache_dir, "btf.json")
    mods = sorted((modules or {}).items())
    stamp = f"{os.path.basename(vmlinuz)}:{st.st_size}:{int(st.st_mtime)}:" + ",".join(
        f"{m}:{os.stat(p).st_size}:{int(os.stat(p).st_mtime)}" for m, p in mods)
    try:
        with open(cache, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("stamp") == stamp:
            return data
    except (OSError, ValueError):
        pass
    from .kernels import module_bytes

    blob = vmlinux_btf(vmlinuz, kbuild_vmlinux)
    base = Btf(blob)
    out: dict[str, dict] = {n: {"id": i, "nargs": a} for n, (i, a) in base.funcs.items()}
    for m, path in mods:
        split = Btf(elf_section(module_bytes(path), ".BTF"), base)
        out.update((f"{m}:{n}", {"id": i, "nargs": a, "module": m}) for n, (i, a) in split.funcs.items())
    data = {"stamp": stamp, "sha256": hashlib.sha256(blob).hexdigest(), "funcs": out}
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cache + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, cache)
    return data


__all__ = ["Btf", "BtfTypes", "parse_btf", "bzimage_payload", "payload_kind", "vmlinux_from_bzimage", "vmlinux_btf",
           "elf_section", "kernel_btf"]
