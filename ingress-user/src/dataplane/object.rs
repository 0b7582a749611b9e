//! The XDP object embedded at build time (see build.rs).

/// The ELF object, or empty when the agent was built without it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ingress-ebpf.o"));

/// Whether this binary carries the XDP program.
pub fn object_embedded() -> bool {
    !OBJECT.is_empty()
}

/// The embedded object, if the XDP program was built before the agent.
pub fn embedded_object() -> Option<&'static [u8]> {
    object_embedded().then_some(OBJECT)
}
