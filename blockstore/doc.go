// Package blockstore is the backing disk of an AoE export: a regular file or
// block device, seen through an offset/length window of 512-byte sectors
// (vblade's -o and -l), with read-only, O_DIRECT and O_DSYNC modes.
//
// # Addressing
//
// AoE sectors are always 512 bytes ([SectorSize]). Offsets given to ReadAt
// and WriteAt are byte offsets relative to the start of the window. A request
// that does not lie entirely inside the window fails with [ErrOutOfRange]
// before the file is touched, so nothing outside the window is ever read or
// written.
//
// # Durability
//
// The Linux AoE initiator never sends FLUSH CACHE: its block queue is created
// without a volatile write cache, so the block layer completes md's and the
// filesystem's flushes itself and strips FUA from writes. Every write the
// target acknowledges is therefore assumed by the initiator to be on stable
// storage already. A caller must do one of two things:
//
//   - open with [Options.Sync] (the file is opened O_DSYNC, [File.Durable]
//     reports true): every successful WriteAt is stable when it returns; or
//   - call [File.Flush] (fdatasync) after WriteAt and before acknowledging
//     the write.
//
// Acknowledging a write that is only in the page cache (or in the disk's
// volatile cache) is "writeback" mode and loses data on power failure or
// crash of the exporting host; it must be an explicit choice of the user.
//
// [Options.Direct] (O_DIRECT) only bypasses the page cache; on its own it does
// not make writes durable, because neither the disk's volatile write cache nor
// the file's allocation metadata is flushed. Combine it with Sync or Flush.
//
// A failed Flush is sticky: Linux reports a writeback error to fdatasync once
// and then forgets it, so a later fdatasync can succeed even though the data
// was lost. Once Flush has failed, every later Flush of the same [File]
// returns that error, and the caller should treat the store as broken.
// Linux reports that error once per open file description, so flushes in
// flight together must each have their own: a [Ring]'s [FlushLane]s, one
// flush at a time each, give them that.
//
// A [Ring] can also send the writes of a store opened without Direct to the
// disk directly ([Ring.WriteDirect]), so that a flush has no page cache to
// write back, only the disk's cache to empty.
//
// # Implementations
//
// [File] is the real store (Linux only). [Memory] keeps the disk in memory
// and models a volatile cache, with fault injection, for unit tests and
// fuzzing. Both satisfy [Store].
package blockstore
