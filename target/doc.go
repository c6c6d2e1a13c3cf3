// Package target serves one AoE export: the request handler that turns an
// AoE request frame into its reply (AoEr11 commands ATA, Query Config, Mac
// Mask List and Reserve/Release) and the loop that reads frames from
// AF_PACKET sockets and sends the replies.
//
// The Handler holds no sockets, so it can be tested and fuzzed with an
// in-memory store and run by several workers; the Server owns the sockets.
//
// Durability: the Linux aoe initiator never sends FLUSH CACHE and treats
// the disk as write-through, so md and the filesystem above it take every
// acknowledged write as stable. Unless the export is configured with
// Writeback, the Handler acknowledges a write only after the store has made
// it durable (a store opened with O_SYNC, or a Flush after the write).
//
// Counters: the Handler counts every request frame once, per initiator
// (source MAC, in a table of MaxInitiators entries and an "other" one):
// by AoE and ATA command, data read and written, ATA and AoE errors,
// frames dropped by reason, reservation refusals, and, for requests a
// Server serves, latency histograms from the frame's receipt to its reply
// being handed to the socket; per export, the requests in flight and the
// writes each group-commit flush acknowledged. The per-frame path only
// adds to atomic counters (no lock, no allocation, one clock read per
// batch of frames); Initiators, InFlight, CommitSizes and Stats take
// snapshots, which package metrics exposes to Prometheus.
package target
