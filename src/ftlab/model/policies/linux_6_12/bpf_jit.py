"""Linux 6.12's arch/x86/net/bpf_jit_comp.c, as far as the size of a BPF trampoline image goes.

From 6.8 a trampoline image is exactly as long as its code (bpf_prog_pack), and %pS prints that
size (``bpf_trampoline_<key>+0x0/0xac``). arch_bpf_trampoline_size() learns it by a dry run of
__arch_prepare_bpf_trampoline() into a scratch page; the model follows that function step by
step and adds up the length of each instruction it emits instead of emitting it. The lengths are
those of the x86-64 encodings the emit helpers choose (REX.W + opcode + ModRM + disp8 or disp32,
``xor`` for a zero immediate, ``movabs`` for a 64-bit one, ...), with what the oracle's guest
(Debian's 6.12.95 under QEMU TCG) runs with: no call-depth accounting
(x86_call_depth_emit_accounting emits nothing without X86_FEATURE_CALL_DEPTH), no return thunk
(emit_return is ``ret; int3``, MITIGATION_SLS), programs JITed, link cookies 0, ``struct bpf_prog``
and the image's ``im`` outside the 32-bit ranges (``movabs``), the traced function in kernel text
(a sign-extended 32-bit immediate). TAIL_CALL_CTX (freplace only) and INDIRECT (struct_ops only)
are not modelled.

Checked against every image size the real 6.12.95 printed in the committed oracle run
(tests/data/oracle-6.12: fentry 0xac on a 2-argument function, 0xa4 on a 1-argument one, fexit
0xe0 and 0xe1 with ORIG_STACK, fmod_ret 0xee with and without ORIG_STACK -- the 16-byte alignment
before the fexit programs swallows that byte --, each further fentry or fexit 0x40, fmod_ret 0x50).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...catalogue import FuncModel

#: MAX_BPF_FUNC_ARGS (include/linux/bpf.h)
MAX_BPF_FUNC_ARGS = 12
#: MAX_BPF_FUNC_REG_ARGS (include/linux/bpf.h)
MAX_BPF_FUNC_REG_ARGS = 5
#: BPF_INSN_SAFETY (bpf_jit_comp.c): the slack the returned size includes
BPF_INSN_SAFETY = 64
#: X86_PATCH_SIZE: a rel32 call or jmp
X86_PATCH_SIZE = 5
#: sizeof(struct bpf_tramp_run_ctx) (include/linux/bpf.h): an empty run_ctx, bpf_cookie, saved_run_ctx
BPF_TRAMP_RUN_CTX_SIZE = 16
#: offsetof(struct bpf_tramp_run_ctx, bpf_cookie)
CTX_COOKIE_OFF = 0
#: btf_distill_func_proto() without a prototype: MAX_BPF_FUNC_REG_ARGS u64 arguments. The model's
#: answer for a function whose BTF model its catalogue does not carry.
FALLBACK_MODEL: FuncModel = ((8, False),) * MAX_BPF_FUNC_REG_ARGS


def is_imm8(value: int) -> bool:
    """is_imm8() (bpf_jit_comp.c): fits a signed byte."""
    return -128 <= value <= 127


def rbp_disp(off: int) -> int:
    """emit_stx() / emit_ldx() of a BPF_DW at [rbp + off] (emit_insn_suffix): REX.W, opcode, ModRM,
    then a disp8 or a disp32."""
    return 4 if is_imm8(off) else 7


def lea_rbp(off: int) -> int:
    """``lea reg, [rbp + off]`` as invoke_bpf_prog emits it (EMIT4, or EMIT3_off32)."""
    return 4 if is_imm8(off) else 7


def emit_mov_imm64_len(imm64: int, ereg: bool = False) -> int:
    """emit_mov_imm64(): ``xor`` (a zero), ``mov r32, imm32`` (an unsigned 32-bit value), ``mov r64,
    simm32`` (a sign-extended one) or ``movabs`` (10 bytes); ``ereg``: r8..r15 take a REX prefix in
    the first two forms."""
    if 0 <= imm64 <= 0xFFFFFFFF:
        if imm64 == 0:
            return 2 + ereg
        return 5 + ereg
    if -(1 << 31) <= imm64 < (1 << 31):
        return 7
    return 10


#: What the model assumes the immediates are (see the module docstring): a vmalloc'ed struct
#: bpf_prog / the image's struct bpf_tramp_image (movabs), the traced function's address in kernel text.
PROG_ADDR = -0x3700_0000_0000
IM_ADDR = -0x3700_0000_0000
FUNC_ADDR = -0x7E00_0000
COOKIE = 0


def get_nr_used_regs(m: FuncModel) -> int:
    """get_nr_used_regs() (bpf_jit_comp.c): how many of the six argument registers the arguments use."""
    used = 0
    for size, _struct in m[:MAX_BPF_FUNC_ARGS]:
        arg_regs = (size + 7) // 8
        if used + arg_regs <= 6:
            used += arg_regs
        if used >= 6:
            break
    return used


def clean_stack_garbage_len(m: FuncModel, nr_stack_slots: int, stack_size: int) -> int:
    """clean_stack_garbage() (bpf_jit_comp.c): ``mov DWORD PTR [rbp + off], 0`` when exactly one
    argument went on the stack and it is at most 4 bytes long."""
    if nr_stack_slots != 1:
        return 0
    if m[-1][0] <= 4:
        return (3 if is_imm8(-(stack_size - 4)) else 6) + 4
    return 0


def save_args_len(m: FuncModel, stack_size: int, for_call_origin: bool) -> int:
    """save_args() (bpf_jit_comp.c): the arguments to the stack frame, register ones (unless
    ``for_call_origin``) and those the caller passed on its stack."""
    n = first_off = nr_regs = nr_stack_slots = 0
    for size, _struct in m[:MAX_BPF_FUNC_ARGS]:
        arg_regs = (size + 7) // 8
        if nr_regs + arg_regs > 6:
            for _ in range(arg_regs):
                n += rbp_disp(nr_stack_slots * 8 + 0x18) + rbp_disp(-stack_size)
                if not nr_stack_slots:
                    first_off = stack_size
                stack_size -= 8
                nr_stack_slots += 1
        else:
            if for_call_origin:
                nr_regs += arg_regs
                continue
            for _ in range(arg_regs):
                n += rbp_disp(-stack_size)
                stack_size -= 8
                nr_regs += 1
    return n + clean_stack_garbage_len(m, nr_stack_slots, first_off)


def restore_regs_len(m: FuncModel, stack_size: int) -> int:
    """restore_regs() (bpf_jit_comp.c): the register arguments back from the stack frame."""
    n = nr_regs = 0
    for size, _struct in m[:MAX_BPF_FUNC_ARGS]:
        arg_regs = (size + 7) // 8
        if nr_regs + arg_regs <= 6:
            for _ in range(arg_regs):
                n += rbp_disp(-stack_size)
                stack_size -= 8
                nr_regs += 1
        else:
            stack_size -= 8 * arg_regs
        if nr_regs >= 6:
            break
    return n


def invoke_bpf_prog_len(stack_size: int, run_ctx_off: int, save_ret: bool) -> int:
    """invoke_bpf_prog() (bpf_jit_comp.c): one program between __bpf_prog_enter and __bpf_prog_exit."""
    n = emit_mov_imm64_len(COOKIE)                         # mov rdi, cookie
    n += rbp_disp(-run_ctx_off + CTX_COOKIE_OFF)           # run_ctx.bpf_cookie = rdi
    n += emit_mov_imm64_len(PROG_ADDR)                     # mov rdi, prog
    n += lea_rbp(-run_ctx_off)                             # lea rsi, [rbp - run_ctx_off]
    n += X86_PATCH_SIZE                                    # call __bpf_prog_enter*
    n += 3                                                 # mov rbx, rax
    n += 3 + 2                                             # test rax, rax; je (2 nops patched)
    n += lea_rbp(-stack_size)                              # lea rdi, [rbp - stack_size]
    n += X86_PATCH_SIZE                                    # call the JITed program
    if save_ret:
        n += rbp_disp(-8)                                  # mov [rbp - 8], rax
    n += emit_mov_imm64_len(PROG_ADDR)                     # mov rdi, prog
    n += 3                                                 # mov rsi, rbx
    n += lea_rbp(-run_ctx_off)                             # lea rdx, [rbp - run_ctx_off]
    n += X86_PATCH_SIZE                                    # call __bpf_prog_exit*
    return n


def __arch_prepare_bpf_trampoline_len(m: FuncModel, flags: int, nr_links: Sequence[int], T: Any) -> int:
    """__arch_prepare_bpf_trampoline() (bpf_jit_comp.c, 6.12): the length it returns, the code's
    plus BPF_INSN_SAFETY; -ENOTSUPP (-524) above MAX_BPF_FUNC_ARGS argument registers.

    ``nr_links``: the number of fentry, fexit and fmod_ret programs; ``T``: the version's BPF_TRAMP_F.
    """
    n_fentry, n_fexit, n_fmod_ret = nr_links
    nr_regs = len(m) + sum((size + 7) // 8 - 1 for size, struct in m if struct)
    if nr_regs > MAX_BPF_FUNC_ARGS:
        return -524
    call_orig = bool(flags & T.CALL_ORIG)
    save_ret = bool(flags & (T.CALL_ORIG | T.RET_FENTRY_RET))
    stack_size = 8 if save_ret else 0
    stack_size += nr_regs * 8
    regs_off = stack_size
    stack_size += 8
    nregs_off = stack_size
    if flags & T.IP_ARG:
        stack_size += 8
    ip_off = stack_size
    stack_size += 8
    rbx_off = stack_size
    stack_size += (BPF_TRAMP_RUN_CTX_SIZE + 7) & ~7
    run_ctx_off = stack_size
    if nr_regs > 6 and call_orig:
        stack_size += (nr_regs - get_nr_used_regs(m)) * 8
        stack_size += 0 if stack_size % 16 else 8
    arg_stack_off = stack_size

    n = 1 + 3 + (4 if is_imm8(stack_size) else 7)          # push rbp; mov rbp, rsp; sub rsp, stack_size
    n += rbp_disp(-rbx_off)                                # mov [rbp - rbx_off], rbx
    n += emit_mov_imm64_len(nr_regs) + rbp_disp(-nregs_off)
    if flags & T.IP_ARG:
        n += emit_mov_imm64_len(FUNC_ADDR) + rbp_disp(-ip_off)
    n += save_args_len(m, regs_off, False)
    if call_orig:
        n += emit_mov_imm64_len(IM_ADDR) + X86_PATCH_SIZE  # mov rdi, im; call __bpf_tramp_enter
    n += n_fentry * invoke_bpf_prog_len(regs_off, run_ctx_off, bool(flags & T.RET_FENTRY_RET))
    if n_fmod_ret:
        n += 2 + rbp_disp(-8)                              # xor eax, eax; mov [rbp - 8], rax
        n += n_fmod_ret * (invoke_bpf_prog_len(regs_off, run_ctx_off, True) + 5 + 6)  # cmp; jne (6 nops)
    if call_orig:
        n += restore_regs_len(m, regs_off) + save_args_len(m, arg_stack_off, True)
        if flags & T.ORIG_STACK:
            n += rbp_disp(8) + 2                           # mov rbx, [rbp + 8]; call *rbx
        else:
            n += X86_PATCH_SIZE                            # call the function's body
        n += rbp_disp(-8) + X86_PATCH_SIZE                 # mov [rbp - 8], rax; 5 nops (ip_after_call)
    if n_fmod_ret:
        n += -n % 16                                       # emit_align(16): do_fexit, the branches' target
    n += n_fexit * invoke_bpf_prog_len(regs_off, run_ctx_off, False)
    if flags & T.RESTORE_REGS:
        n += restore_regs_len(m, regs_off)
    if call_orig:
        n += emit_mov_imm64_len(IM_ADDR) + X86_PATCH_SIZE  # mov rdi, im; call __bpf_tramp_exit
    if save_ret:
        n += rbp_disp(-8)                                  # mov rax, [rbp - 8]
    n += rbp_disp(-rbx_off) + 1                            # mov rbx, [rbp - rbx_off]; leave
    if flags & T.SKIP_FRAME:
        n += 4                                             # add rsp, 8
    n += 2                                                 # emit_return: ret; int3
    return n + BPF_INSN_SAFETY
