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
package target
