//! Every raw system call, ioctl and ptrace request stasis makes, and the injection engine that makes a
//! stopped task execute a system call. This is the only crate with `unsafe` code; each block states
//! the invariant it relies on in a `// SAFETY:` comment.
