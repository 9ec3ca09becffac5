//! The process's memory allocator.
//!
//! sled and the HTTP stack allocate and free buffers on every event; under
//! the ingest benchmark glibc's allocator took ~14 % of the server's CPU.
//! mimalloc is declared here, in the library, so that tests and benchmarks
//! run the server with the allocator production uses.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v3, the
/// version `libmimalloc-sys` builds by default); not exported by the
/// bindings.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays committed before mimalloc returns it to
/// the OS.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Keep freed memory for a second instead of mimalloc's 10 ms. sled frees
/// and allocates megabyte-sized log buffers continually; returned at once,
/// every new one is faulted in and zeroed again by the kernel, which cost
/// ~9 % of the CPU and a fifth of the durable acknowledgements per second
/// in the ingest benchmark. Idempotent; call once at start.
///
/// And no transparent huge pages for this process: mimalloc asks for them
/// on its arenas, and then every purged-and-reused stretch is faulted back
/// in 2 MiB at a time, each zeroed by the kernel. Under the ingest
/// benchmark that zeroing (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page`) was ~10 % of the server's CPU; without
/// THP the server spent ~15 % less CPU per acknowledged event (65-74
/// instead of 79-83 µs in three alternating pairs of runs). mimalloc's
/// own switch (`MIMALLOC_ALLOW_THP=0`) is only read before `main`, hence
/// the `prctl`, which also covers later mappings.
pub fn tune() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers;
        // it only changes how this process's future page faults are served.
        #[allow(unsafe_code)]
        let disabled = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if disabled != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
        }
    }
    // SAFETY: `mi_option_set` takes an option id and a value; any id is
    // accepted (unknown ones are ignored) and it is safe to call at any
    // time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}
