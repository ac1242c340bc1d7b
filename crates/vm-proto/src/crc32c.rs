//! CRC-32C (Castagnoli, iSCSI/ext4 polynomial 0x1EDC6F41, reflected), as used for the header
//! and payload checksums of every frame.
//!
//! Implemented here rather than pulled in as a dependency: it is forty lines, and the protocol
//! crate stays free of third-party code on its decode path. "Slicing-by-8" tables (8 KiB,
//! built at compile time) process eight bytes per step, so that checking a maximum-size payload
//! costs tens of microseconds even in a debug build's worst case.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[0]` is the classic byte-at-a-time table; `TABLES[k][b]` is the CRC of byte `b`
/// followed by `k` zero bytes, which lets eight input bytes be folded in at once.
static TABLES: [[u32; 256]; 8] = make_tables();

const fn make_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    tables
}

/// CRC-32C of `bytes` (initial value and final XOR `0xFFFF_FFFF`, as in RFC 3720).
///
/// ```
/// assert_eq!(vm_proto::crc32c::crc32c(b"123456789"), 0xE306_9283);
/// ```
pub fn crc32c(bytes: &[u8]) -> u32 {
    !update(!0, bytes)
}

/// Folds `bytes` into the (pre-inverted) running CRC state.
pub(crate) fn update(mut crc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut lo = [0u8; 4];
        let mut hi = [0u8; 4];
        lo.copy_from_slice(&chunk[..4]);
        hi.copy_from_slice(&chunk[4..]);
        let lo = u32::from_le_bytes(lo) ^ crc;
        let hi = u32::from_le_bytes(hi);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xff) as usize]
            ^ TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = TABLES[0][((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// `a · b` modulo the polynomial, both in the reflected bit order of the CRC register (bit 31
/// is x^0). Multiplying a register by `x^(8n)` is the same as feeding it `n` zero bytes.
const fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `ZEROS_LO[i]` = x^(8·i), `ZEROS_HI[j]` = x^(8·256·j) (mod the polynomial): with them, the
/// effect of up to 65,536 zero bytes on a register is two multiplications.
static ZEROS_LO: [u32; 256] = make_zeros(1);
static ZEROS_HI: [u32; 257] = make_zeros(256);

/// Powers x^(8·step·k) for k = 0..N.
const fn make_zeros<const N: usize>(step: usize) -> [u32; N] {
    // In the reflected order x^0 is bit 31 and x^1 bit 30; x^8 is x^1 squared three times.
    let x1 = 1u32 << 30;
    let x2 = multmodp(x1, x1);
    let x4 = multmodp(x2, x2);
    let x8 = multmodp(x4, x4);
    let mut unit = 1u32 << 31;
    let mut i = 0;
    while i < step {
        unit = multmodp(unit, x8);
        i += 1;
    }
    let mut out = [0u32; N];
    let mut power = 1u32 << 31;
    let mut k = 0;
    while k < N {
        out[k] = power;
        power = multmodp(power, unit);
        k += 1;
    }
    out
}

/// The register `crc` after `n` zero bytes, in at most a few multiplications (no byte is
/// touched). Linear in `crc`.
pub(crate) fn shift(mut crc: u32, mut n: usize) -> u32 {
    // One round covers up to 65,536 bytes (the largest payload), more only in principle.
    const ROUND: usize = 256 * 256;
    while n > 0 {
        let step = n.min(ROUND);
        crc = multmodp(ZEROS_LO[step % 256], multmodp(ZEROS_HI[step / 256], crc));
        n -= step;
    }
    crc
}

/// CRC-32C of the bytes between two points of one running register: `before` is the register
/// (as [`update`] keeps it) before them, `after` the register after them, `n` their number.
/// Because the CRC is linear, this costs two multiplications however long the span is; it is
/// what lets the decoder check a payload whose bytes it has already folded into a running
/// register without reading them again.
pub(crate) fn span(before: u32, after: u32, n: usize) -> u32 {
    // update(s, w) = update(0, w) ^ shift(s, |w|), and crc32c(w) = !update(!0, w).
    !(after ^ shift(before ^ !0, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, to check the sliced tables against.
    fn slow(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    /// RFC 3720 appendix B.4 vectors.
    #[test]
    fn rfc3720_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
    }

    #[test]
    fn shift_is_feeding_zeros() {
        for n in [
            0usize, 1, 2, 7, 8, 255, 256, 257, 1000, 65535, 65536, 65537, 200_000,
        ] {
            for crc in [0u32, 1, 0xDEAD_BEEF, !0] {
                assert_eq!(shift(crc, n), update(crc, &vec![0u8; n]), "n={n}");
            }
        }
    }

    #[test]
    fn span_of_a_running_register_is_the_crc_of_the_span() {
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for seed in [0u32, 0x1234_5678] {
            for (a, b) in [
                (0, 0),
                (0, 3000),
                (5, 6),
                (17, 2999),
                (100, 1100),
                (3000, 3000),
            ] {
                let before = update(seed, &data[..a]);
                let after = update(before, &data[a..b]);
                assert_eq!(span(before, after, b - a), crc32c(&data[a..b]), "{a}..{b}");
            }
        }
    }

    #[test]
    fn sliced_matches_bitwise_for_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for end in start..data.len() {
                assert_eq!(crc32c(&data[start..end]), slow(&data[start..end]));
            }
        }
    }
}
