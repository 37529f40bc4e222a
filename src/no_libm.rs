//! The one C math function lade's dependencies call, `pow` (indicatif's rate estimator), from
//! the `libm` crate instead of the system's libm.so: with no other reference to it, the linker
//! leaves libm.so out of the executable (`--as-needed`), and every start of lade is spared the
//! loading of one more shared object and its `ifunc` resolvers, ~0.07 ms of a `lade run` on the
//! benchmark machine (measured with two otherwise equal programs). A dependency that starts
//! calling another libm function brings libm.so back, with no other harm.

/// `pow(3)`, as C's libm defines it.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
