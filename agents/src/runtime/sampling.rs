//! The sampling of the Director's and the Workers' model calls:
//! `[agents] temperature`, and with `[agents] seed` a seed per call derived
//! from it and the call's place (task, subtask, attempt, step), so that the
//! same configuration repeats a run call for call while every call still
//! draws differently from the others.

use troupe_inference::sampling::SamplingOptions;

/// Sampling for the call named by `place` (e.g. `t-1/s1/1/3`).
pub(crate) fn agent_sampling(temperature: f32, seed: Option<u64>, place: &str) -> SamplingOptions {
    SamplingOptions {
        temperature,
        seed: seed.map(|seed| call_seed(seed, place)),
        ..SamplingOptions::default()
    }
}

/// FNV-1a of the seed and the place, folded to 32 bits.
fn call_seed(seed: u64, place: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.to_le_bytes().iter().chain(place.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash ^ (hash >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_repeat_for_the_same_place_and_differ_between_places() {
        let a = agent_sampling(0.2, Some(7), "t/s1/1/1");
        assert_eq!(a.seed, agent_sampling(0.2, Some(7), "t/s1/1/1").seed);
        assert_ne!(a.seed, agent_sampling(0.2, Some(7), "t/s1/1/2").seed);
        assert_ne!(a.seed, agent_sampling(0.2, Some(8), "t/s1/1/1").seed);
        assert_eq!(agent_sampling(0.2, None, "t").seed, None);
        assert_eq!(a.temperature, 0.2);
    }
}
