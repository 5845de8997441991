/*
 * Fixes to the llama.cpp that llama-cpp-sys-2 vendors, carried without
 * editing its sources: .cargo/config.toml force-includes this header into
 * every C++ file that crate compiles (CXXFLAGS_<target> = -include ...), and
 * benches/build-llama-peers.sh does the same for llama.cpp's own tools, so
 * both sides of every comparison run the same code.
 *
 * 1. AMX tile configuration (ggml/src/ggml-cpu/amx/mmq.cpp,
 *    ggml_tile_config_init). The function fills a 64-byte tile_config_t on
 *    the stack and calls _tile_loadconfig(&tc). GCC's builtin behind that
 *    intrinsic does not tell the optimiser that LDTILECFG reads the 64
 *    bytes, so at -O3 (Release) GCC 12 deletes the stores to rows[] and
 *    colsb[] as dead and keeps only palette_id: the disassembly is
 *        vmovdqa64 %zmm0,0xc0(%rsp) ; movb $0x1,0xc0(%rsp) ; ldtilecfg 0xc0(%rsp)
 *    Every tile then has zero rows, and the first TILELOADD faults (#UD:
 *    SIGILL, or SIGSEGV depending on the build), so every quantized model
 *    crashes in ggml_backend_amx_mul_mat on CPUs with AMX (Sapphire Rapids
 *    and later) — llama.cpp issue #20824, Ollama #17205; the same analysis
 *    is in llama.cpp PR #26954 (open). At -O2 the stores happen to survive.
 *    The fix gives LDTILECFG the whole configuration as a memory operand,
 *    so the compiler must write all of it first.
 */
#ifndef TROUPE_GGML_FIXES_H
#define TROUPE_GGML_FIXES_H

#if defined(__cplusplus) && defined(__x86_64__) && defined(__AMX_TILE__) && defined(__GNUC__)
#include <immintrin.h>

struct troupe_tile_config_bytes {
    unsigned char bytes[64];
};

static inline void troupe_ldtilecfg(const void * config) {
    __asm__ __volatile__("ldtilecfg %0"
                         :
                         : "m"(*static_cast<const troupe_tile_config_bytes *>(config)));
}

#define _tile_loadconfig(config) troupe_ldtilecfg(config)
#endif

#endif /* TROUPE_GGML_FIXES_H */
