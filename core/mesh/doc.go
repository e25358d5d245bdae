// Package mesh implements the Peat mesh byte formats the gateway must share
// with peat-mesh nodes and with the Rust gateway it replaces: the formation
// genesis (root of trust), its HKDF derivations, mesh membership
// certificates, and the gateway's signed certificate revocation list.
//
// Everything here is a pure function of its inputs: no I/O, no clock, no
// global state. Callers pass randomness (an io.Reader) and times (Unix
// milliseconds) explicitly so results are reproducible in tests and the
// package can be used from any storage or API layer.
//
// Byte layouts follow the peat-mesh 0.6.0 encodings exactly, including the
// decoders' leniency (trailing bytes are ignored) and strictness (UTF-8,
// enum ranges). Where the reference would emit a corrupt encoding (names or
// identifiers longer than their length prefix allows) this package refuses
// instead.
package mesh
