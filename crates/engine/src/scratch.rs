//! Typed access to an injector's data area: arguments written before an injected call, results read
//! after it.

use crate::error::Result;
use stasis_sys::inject::Injector;

/// Write little-endian 64-bit words at `addr`.
pub fn write_u64s(inj: &Injector, addr: u64, words: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    Ok(inj.write(addr, &bytes)?)
}

/// Read `n` little-endian 64-bit words at `addr`.
pub fn read_u64s(inj: &Injector, addr: u64, n: usize) -> Result<Vec<u64>> {
    let mut bytes = vec![0u8; n * 8];
    inj.read(addr, &mut bytes)?;
    Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// Write `s` with a terminating NUL at `addr`.
pub fn write_cstr(inj: &Injector, addr: u64, s: &str) -> Result<()> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    Ok(inj.write(addr, &bytes)?)
}
