//! The pod-VM test tier (DESIGN.md section 5, tier 3). This host's kernel refuses BPF-LSM, so
//! tests that need it boot Debian's own kernels (6.1 and 6.12, `apt-get download`ed and cached
//! outside the repository by `scripts/vm/fetch-kernels.sh`) under `qemu-system-x86_64 -accel
//! tcg` with `lsm=...,bpf`, from an initramfs holding busybox, runc and our binaries. The guest
//! runner (`vmtest-guest`) runs the scenarios and reports each result on the serial console
//! ([`report`]); the host test asserts them.
//!
//! * [`kernel`]: the cached kernels and their module dependencies.
//! * [`initramfs`]: the guest's files, written as a `newc` archive ([`cpio`]).
//! * [`vm`]: QEMU with a config that profiles extend (extra devices, a monitor socket).

pub mod cpio;
pub mod initramfs;
pub mod kernel;
pub mod report;
pub mod suite;
pub mod vm;

pub use initramfs::Initramfs;
pub use kernel::{kernels, Kernel};
pub use report::Report;
pub use suite::{run_suite, Suite};
pub use vm::{Vm, VmConfig};
