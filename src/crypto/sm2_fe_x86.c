/*
 * sm2_fe_x86.c: multiplication and squaring modulo the SM2 prime p in the
 * Montgomery domain with the BMI2 (mulx) and ADX (adcx, adox) instructions
 * of x86-64, for sm2_fe.h, which calls them instead of its portable C when
 * the processor has both (sm2_fe_use_adx, set once at load from cpuid).
 *
 * Same results as the portable sm2_fp_mul / sm2_fp_sqr (tests/crypto
 * compares them on random and edge inputs): r = a * b / 2^256 mod p, fully
 * reduced, for a, b < p. The code has no branch and no memory index at all;
 * the final conditional subtraction selects with cmov.
 *
 * Written as file-scope assembly (System V calling convention: rdi = r,
 * rsi = a, rdx = b), so the build needs no assembler language of its own.
 */
#include "crypto/sm2_fe.h"

#if SM2_HAVE_X86_ASM

#include <cpuid.h>

int sm2_fe_use_adx;

/* Reads cpuid leaf 7: BMI2 is EBX bit 8, ADX EBX bit 19. */
__attribute__((constructor)) static void sm2_fe_detect(void)
{
	unsigned int a = 0, b = 0, c = 0, d = 0;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d))
		sm2_fe_use_adx = ((b >> 8) & 1) && ((b >> 19) & 1);
}

void sm2_fe_force_adx(bool on)
{
	sm2_fe_use_adx = on;
}

/* The portable versions, out of line, for processors without ADX. */
void sm2_fp_mul_portable(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_fp_mul_c(r, a, b);
}

void sm2_fp_sqr_portable(sm2_u256 *r, const sm2_u256 *a)
{
	sm2_fp_sqr_c(r, a);
}

/*
 * One Montgomery step for p (-p^-1 = 1 mod 2^64, so q = the lowest limb w0):
 * adds q * p = q 2^256 - q 2^224 - q 2^96 + q 2^64 - q to the window
 * w0..w4 plus rcx (the carry of the previous step) at w4's position; w0
 * becomes 0 and is dropped; rcx receives the carry out of w4 (0, 1 or 2,
 * exact: the window's value is never negative). Uses rax, rbx.
 */
#define RED(w0, w1, w2, w3, w4)                      \
	"mov rax, " w0 "\n\t"                        \
	"shl rax, 32\n\t"                            \
	"mov rbx, " w0 "\n\t"                        \
	"shr rbx, 32\n\t"                            \
	"add " w4 ", rcx\n\t"                        \
	"mov ecx, 0\n\t"                             \
	"adc rcx, 0\n\t"                             \
	"add " w1 ", " w0 "\n\t"                     \
	"adc " w2 ", 0\n\t"                          \
	"adc " w3 ", 0\n\t"                          \
	"adc " w4 ", " w0 "\n\t"                     \
	"adc rcx, 0\n\t"                             \
	"sub " w1 ", rax\n\t"                        \
	"sbb " w2 ", rbx\n\t"                        \
	"sbb " w3 ", rax\n\t"                        \
	"sbb " w4 ", rbx\n\t"                        \
	"sbb rcx, 0\n\t"

/*
 * The 512-bit product is in r8..r15: four steps leave (rcx, r15..r12) < 2p;
 * subtracting p (adding 2^256 - p = [1, 2^32 - 1, 0, 2^32] and dropping
 * the carry) when that value is >= p gives the result, stored at [rdi].
 */
#define REDUCE_AND_STORE                             \
	"xor ecx, ecx\n\t"                           \
	RED("r8", "r9", "r10", "r11", "r12")         \
	RED("r9", "r10", "r11", "r12", "r13")        \
	RED("r10", "r11", "r12", "r13", "r14")       \
	RED("r11", "r12", "r13", "r14", "r15")       \
	"mov rax, r12\n\t"                           \
	"add rax, 1\n\t"                             \
	"mov rbx, r13\n\t"                           \
	"mov edx, 0xffffffff\n\t"                    \
	"adc rbx, rdx\n\t"                           \
	"mov rsi, r14\n\t"                           \
	"adc rsi, 0\n\t"                             \
	"mov rbp, r15\n\t"                           \
	"mov rdx, 0x100000000\n\t"                   \
	"adc rbp, rdx\n\t"                           \
	"adc rcx, 0\n\t"                             \
	"sub rcx, 1\n\t"  /* CF: the value was < p */ \
	"cmovc rax, r12\n\t"                         \
	"cmovc rbx, r13\n\t"                         \
	"cmovc rsi, r14\n\t"                         \
	"cmovc rbp, r15\n\t"                         \
	"mov [rdi], rax\n\t"                         \
	"mov [rdi + 8], rbx\n\t"                     \
	"mov [rdi + 16], rsi\n\t"                    \
	"mov [rdi + 24], rbp\n\t"

#define PUSH_ALL "push rbx\n\tpush rbp\n\tpush r12\n\tpush r13\n\tpush r14\n\tpush r15\n\t"
#define POP_ALL  "pop r15\n\tpop r14\n\tpop r13\n\tpop r12\n\tpop rbp\n\tpop rbx\n\t"

/* Row i >= 1 of the schoolbook product: t_i..t_i+4 += a * rdx, where t_i+4
 * was not yet used. rbp is 0; CF and OF are clear on entry. */
#define ROW(t0, t1, t2, t3, t4)                      \
	"mulx rbx, rax, [rsi]\n\t"                   \
	"adcx " t0 ", rax\n\t"                       \
	"adox " t1 ", rbx\n\t"                       \
	"mulx rbx, rax, [rsi + 8]\n\t"               \
	"adcx " t1 ", rax\n\t"                       \
	"adox " t2 ", rbx\n\t"                       \
	"mulx rbx, rax, [rsi + 16]\n\t"              \
	"adcx " t2 ", rax\n\t"                       \
	"adox " t3 ", rbx\n\t"                       \
	"mulx " t4 ", rax, [rsi + 24]\n\t"           \
	"adcx " t3 ", rax\n\t"                       \
	"adox " t4 ", rbp\n\t"                       \
	"adcx " t4 ", rbp\n\t"

__asm__(".text\n\t"
	".intel_syntax noprefix\n\t"
	".p2align 4\n\t"
	".globl sm2_fp_mul_adx\n\t"
	".hidden sm2_fp_mul_adx\n\t"
	".type sm2_fp_mul_adx, @function\n"
	"sm2_fp_mul_adx:\n\t"
	PUSH_ALL
	"mov rcx, rdx\n\t"
	/* row 0: r8..r12 = a * b0 */
	"mov rdx, [rcx]\n\t"
	"mulx r9, r8, [rsi]\n\t"
	"mulx r10, rax, [rsi + 8]\n\t"
	"add r9, rax\n\t"
	"mulx r11, rax, [rsi + 16]\n\t"
	"adc r10, rax\n\t"
	"mulx r12, rax, [rsi + 24]\n\t"
	"adc r11, rax\n\t"
	"adc r12, 0\n\t"
	"xor ebp, ebp\n\t"
	"mov rdx, [rcx + 8]\n\t"
	ROW("r9", "r10", "r11", "r12", "r13")
	"mov rdx, [rcx + 16]\n\t"
	ROW("r10", "r11", "r12", "r13", "r14")
	"mov rdx, [rcx + 24]\n\t"
	ROW("r11", "r12", "r13", "r14", "r15")
	REDUCE_AND_STORE
	POP_ALL
	"ret\n\t"
	".size sm2_fp_mul_adx, .-sm2_fp_mul_adx\n\t"

	".p2align 4\n\t"
	".globl sm2_fp_sqr_adx\n\t"
	".hidden sm2_fp_sqr_adx\n\t"
	".type sm2_fp_sqr_adx, @function\n"
	"sm2_fp_sqr_adx:\n\t"
	PUSH_ALL
	/* cross products a_i a_j (i < j) into r9..r14 */
	"mov rdx, [rsi]\n\t"
	"mulx r10, r9, [rsi + 8]\n\t"
	"mulx r11, rax, [rsi + 16]\n\t"
	"add r10, rax\n\t"
	"mulx r12, rax, [rsi + 24]\n\t"
	"adc r11, rax\n\t"
	"adc r12, 0\n\t"
	"mov rdx, [rsi + 8]\n\t"
	"xor ebp, ebp\n\t"
	"mulx rbx, rax, [rsi + 16]\n\t"
	"adcx r11, rax\n\t"
	"adox r12, rbx\n\t"
	"mulx r13, rax, [rsi + 24]\n\t"
	"adcx r12, rax\n\t"
	"adox r13, rbp\n\t"
	"adcx r13, rbp\n\t"
	"mov rdx, [rsi + 16]\n\t"
	"mulx r14, rax, [rsi + 24]\n\t"
	"add r13, rax\n\t"
	"adc r14, 0\n\t"
	/* doubled, into r9..r15 */
	"xor r15d, r15d\n\t"
	"add r9, r9\n\t"
	"adc r10, r10\n\t"
	"adc r11, r11\n\t"
	"adc r12, r12\n\t"
	"adc r13, r13\n\t"
	"adc r14, r14\n\t"
	"adc r15, 0\n\t"
	/* plus the squares a_i^2 (mulx leaves the flags alone) */
	"mov rdx, [rsi]\n\t"
	"mulx rax, r8, rdx\n\t"
	"add r9, rax\n\t"
	"mov rdx, [rsi + 8]\n\t"
	"mulx rcx, rbx, rdx\n\t"
	"adc r10, rbx\n\t"
	"adc r11, rcx\n\t"
	"mov rdx, [rsi + 16]\n\t"
	"mulx rcx, rbx, rdx\n\t"
	"adc r12, rbx\n\t"
	"adc r13, rcx\n\t"
	"mov rdx, [rsi + 24]\n\t"
	"mulx rcx, rbx, rdx\n\t"
	"adc r14, rbx\n\t"
	"adc r15, rcx\n\t"
	REDUCE_AND_STORE
	POP_ALL
	"ret\n\t"
	".size sm2_fp_sqr_adx, .-sm2_fp_sqr_adx\n\t"
	".att_syntax prefix\n");

#endif
