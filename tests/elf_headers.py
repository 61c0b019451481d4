"""Real ELF headers of each architecture's executables: an oracle from outside flannelnode.

The first 64 bytes of `/bin/busybox` from Debian 12's `busybox-static` 1:1.35.0-4+deb12u1+b1
package for each Debian architecture (the mirror's
pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_<arch>.deb, `dpkg-deb -x`, then
`head -c 64 bin/busybox | xxd -p`); `readelf -h` of each file agrees with the comment beside it.
Debian 12 has no riscv64 port, so that header is written from the RISC-V ELF
psABI (EM_RISCV = 243, ELFCLASS64, ELFDATA2LSB, e_flags 0x4 = double-float ABI, as Go emits it).

The ELF specification's numbers, written here and not read from flannelnode.arch:
e_machine EM_X86_64 62, EM_AARCH64 183, EM_ARM 40, EM_PPC64 21, EM_S390 22, EM_MIPS 8,
EM_RISCV 243; EI_CLASS 1 = ELFCLASS32, 2 = ELFCLASS64; EI_DATA 1 = ELFDATA2LSB, 2 = ELFDATA2MSB.
"""

from __future__ import annotations

# flannel's arch name -> (EI_CLASS, EI_DATA, e_machine), from the ELF specification
SPEC: dict[str, tuple[int, int, int]] = {
    "amd64": (2, 1, 62),  # x86-64: 64-bit, little-endian
    "arm64": (2, 1, 183),  # AArch64: 64-bit, little-endian
    "arm": (1, 1, 40),  # ARM (armv7 hard-float): 32-bit, little-endian
    "ppc64le": (2, 1, 21),  # PowerPC64: 64-bit, little-endian
    "s390x": (2, 2, 22),  # S/390: 64-bit, big-endian
    "mips64le": (2, 1, 8),  # MIPS: 64-bit, little-endian
    "riscv64": (2, 1, 243),  # RISC-V: 64-bit, little-endian
}

# flannel's arch name -> the first 64 bytes of a real executable for it (see the docstring)
REAL_HEADERS: dict[str, bytes] = {
    # amd64: ELF64, little endian, EXEC, Advanced Micro Devices X86-64
    "amd64": bytes.fromhex(
        "7f454c4602010103000000000000000002003e0001000000f0eb400000000000"
        "400000000000000070381e000000000000000000400038000a0040001b001a00"
    ),
    # arm64: ELF64, little endian, EXEC, AArch64
    "arm64": bytes.fromhex(
        "7f454c460201010300000000000000000200b700010000008005400000000000"
        "400000000000000068261c00000000000000000040003800060040001a001900"
    ),
    # armhf: ELF32, little endian, EXEC, ARM
    "arm": bytes.fromhex(
        "7f454c4601010103000000000000000002002800010000007187030034000000"
        "f09513000004000534002000070028001c001b0001000070c4351300c4351400"
    ),
    # ppc64el: ELF64, little endian, EXEC, PowerPC64
    "ppc64le": bytes.fromhex(
        "7f454c4602010103000000000000000002001500010000002c7f121000000000"
        "4000000000000000f8262600000000000200000040003800060040001b001a00"
    ),
    # s390x: ELF64, big endian, EXEC, IBM S/390
    "s390x": bytes.fromhex(
        "7f454c4602020103000000000000000000020016000000010000000001004830"
        "000000000000004000000000001f4628000000000040003800060040001a0019"
    ),
    # mips64el: ELF64, little endian, EXEC, MIPS R3000 (flags 0x80000007, mips64r2)
    "mips64le": bytes.fromhex(
        "7f454c46020101000000000000000000020008000100000090cb002001000000"
        "400000000000000038742500000000000700008040003800070040001e001d00"
    ),
    # riscv64: from the psABI, not copied from a file (see the docstring)
    "riscv64": bytes.fromhex(
        "7f454c460201010000000000000000000200f300010000000010010000000000"
        "4000000000000000000000000000000004000000400038000300400000000000"
    ),
}
