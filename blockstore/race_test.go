//go:build race

package blockstore

// raceEnabled: sync.Pool drops items at random under the race detector, so
// pooled paths allocate.
const raceEnabled = true
