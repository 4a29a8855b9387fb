//! The process's memory allocator: mimalloc (feature `mimalloc`, on by
//! default), measured faster than glibc malloc on the request path
//! (BENCHMARKS.md). Without the feature the system allocator is used, which
//! heap profilers (heaptrack, valgrind) can see:
//! `cargo build --release -p portcullis --no-default-features`.
//!
//! One mimalloc option is changed from its default: arenas are committed on
//! demand, not eagerly. mimalloc commits its arenas eagerly on systems that
//! overcommit (Linux), and never gives back the memory of an eagerly
//! committed arena: what a large configuration's load freed stayed resident.
//! Committed on demand, freed memory is purged (returned to the OS) after
//! mimalloc's purge delay. At 10,000 routes this lowered the resident set by
//! ≈ 19 MiB, with the same instructions and system calls per request
//! (BENCHMARKS.md, "Memory at 10,000 routes"). `MIMALLOC_ARENA_EAGER_COMMIT`
//! in the environment still decides when it is set. After each configuration
//! is applied, [`release_free_memory`] has mimalloc purge what is free at
//! once.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc v2's `mi_option_e` (the
/// version libmimalloc-sys builds without its `v3` feature, which we do not
/// enable).
#[cfg(feature = "mimalloc")]
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

#[cfg(feature = "mimalloc")]
unsafe extern "C" {
    /// mimalloc's `mi_option_set` (linked in by libmimalloc-sys).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    /// mimalloc's `mi_collect`.
    fn mi_collect(force: bool);
    /// mimalloc's `mi_option_get`.
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    /// The C library's `getenv`: reading the environment without allocating.
    fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
}

/// Set the options before `main`: the first allocation (made by the Rust
/// runtime before `main` runs) reserves mimalloc's first arena, whose
/// commit mode is decided then. An `.init_array` entry runs before any of
/// that; it allocates nothing.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_OPTIONS: extern "C" fn() = set_options;

#[cfg(feature = "mimalloc")]
extern "C" fn set_options() {
    // SAFETY: `getenv` gets a NUL-terminated name and only reads the
    // environment (nothing modifies it this early); `mi_option_set` takes
    // any option index and value, and is safe to call before mimalloc's
    // first allocation (options are plain static variables).
    unsafe {
        if getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
}

/// Give the memory freed so far back to the OS now, rather than when
/// mimalloc next looks (it purges freed arena memory only while it is
/// called: an idle process kept what a configuration load had freed).
/// Called after a configuration is applied, off the request path.
pub fn release_free_memory() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: `mi_collect` may be called at any time from any thread.
    unsafe {
        mi_collect(true)
    }
}

#[cfg(all(test, feature = "mimalloc", target_os = "linux"))]
mod tests {
    #[test]
    fn arenas_are_committed_on_demand() {
        // This test binary links this module, so its `.init_array` entry
        // ran before the test harness's first allocation.
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            // SAFETY: reads an option.
            let mode = unsafe { super::mi_option_get(super::MI_OPTION_ARENA_EAGER_COMMIT) };
            assert_eq!(mode, 0);
        }
    }
}
