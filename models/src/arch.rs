//! The model architectures the vendored llama.cpp can load.
//!
//! llama.cpp refuses a file whose `general.architecture` it does not know, but
//! only after troupe has committed memory to the load; checking the name
//! against this list first turns that into an early, readable error.
//!
//! The list is `LLM_ARCH_NAMES` from `src/llama-arch.cpp` of the llama.cpp
//! that llama-cpp-sys-2 0.1.161 vendors, less `clip` (a placeholder that only
//! llama-quantize uses; llama.cpp cannot run it as a model) and `(unknown)`.
//! Regenerate it after bumping llama-cpp-sys-2 with:
//!
//! ```text
//! sed -n '/LLM_ARCH_NAMES = {/,/^};/p' \
//!   ~/.cargo/registry/src/*/llama-cpp-sys-2-<version>/llama.cpp/src/llama-arch.cpp \
//!   | grep -o '"[^"]*"' | grep -v '"clip"\|"(unknown)"'
//! ```

/// Architecture names (`general.architecture`) the vendored llama.cpp loads.
pub const LLAMA_CPP_ARCHITECTURES: &[&str] = &[
    "llama",
    "llama4",
    "deci",
    "falcon",
    "grok",
    "gpt2",
    "gptj",
    "gptneox",
    "mpt",
    "baichuan",
    "starcoder",
    "refact",
    "bert",
    "modern-bert",
    "nomic-bert",
    "nomic-bert-moe",
    "neo-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "eurobert",
    "bloom",
    "stablelm",
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen2vl",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "clef",
    "qwen4exp",
    "phi2",
    "phi3",
    "phimoe",
    "plamo",
    "plamo2",
    "plamo3",
    "codeshell",
    "orion",
    "internlm2",
    "minicpm",
    "minicpm3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4-assistant",
    "gemma-embedding",
    "starcoder2",
    "mamba",
    "mamba2",
    "maple",
    "jamba",
    "falcon-h1",
    "xverse",
    "command-r",
    "cohere2",
    "cohere2moe",
    "dbrx",
    "olmo",
    "olmo2",
    "olmoe",
    "muse-glimmer",
    "openelm",
    "arctic",
    "deepseek",
    "deepseek2",
    "deepseek2-ocr",
    "deepseek32",
    "deepseek4",
    "chatglm",
    "glm4",
    "glm4moe",
    "glm-dsa",
    "bitnet",
    "t5",
    "t5encoder",
    "jais",
    "jais2",
    "nemotron",
    "nemotron_h",
    "nemotron_h_moe",
    "exaone",
    "exaone4",
    "exaone-moe",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "granite",
    "granitemoe",
    "granitehybrid",
    "graniteswitch",
    "granite_swa",
    "chameleon",
    "wavtokenizer-dec",
    "plm",
    "bailingmoe",
    "bailingmoe2",
    "bailingmoe3",
    "dots1",
    "dots3note",
    "arcee",
    "afmoe",
    "laguna",
    "ernie4_5",
    "ernie4_5-moe",
    "hunyuan-moe",
    "hunyuan-dense",
    "hunyuan_vl",
    "hy_v3",
    "hy_v4",
    "smollm3",
    "gpt-oss",
    "lfm2",
    "lfm2moe",
    "dream",
    "smallthinker",
    "llada",
    "llada-moe",
    "seed_oss",
    "grovemoe",
    "apertus",
    "minimax-01",
    "hrm_text",
    "minimax-m2",
    "minimax-m3",
    "cogvlm",
    "rnd1",
    "pangu-embedded",
    "mistral3",
    "eagle3",
    "dflash",
    "mistral4",
    "paddleocr",
    "mimo2",
    "step35",
    "spark2_5",
    "llama-embed",
    "maincoder",
    "kimi-linear",
    "kimi-k3",
    "glm5-next",
    "talkie",
    "mellum",
    "nanbeige",
    "qwen3tts",
    "pockettts",
];

/// Whether the vendored llama.cpp knows the architecture `name`
/// (compared exactly, as llama.cpp does).
pub fn is_supported(name: &str) -> bool {
    LLAMA_CPP_ARCHITECTURES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_architectures_are_supported() {
        for name in ["llama", "qwen2", "qwen3", "gemma3", "phi3", "mistral3"] {
            assert!(is_supported(name), "{name} should be supported");
        }
    }

    #[test]
    fn placeholders_and_unknown_names_are_not() {
        for name in ["clip", "(unknown)", "notanarch", "", "LLAMA"] {
            assert!(!is_supported(name), "{name} should not be supported");
        }
    }
}
