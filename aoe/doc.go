// Package aoe implements the ATA over Ethernet (AoE) wire protocol, as
// described in the AoEr11 specification (S. Hopkins and B. Coile, Coraid,
// February 2009).
//
// The package is pure: it parses and marshals frames and holds no sockets
// or state. It covers the AoE header (AoEr11, Section 2), the four commands
// of Section 3 (Issue ATA Command, 3.1; Query Config Information, 3.2; Mac
// Mask List, 3.3; Reserve/Release, 3.4) and the error codes of Section 2.4,
// plus the ATA register values and the IDENTIFY DEVICE page that a target
// needs to serve the Linux aoe initiator.
//
// Parsing follows the robustness principle the Linux initiator relies on:
// lengths come from the count fields, not from the frame size, so Ethernet
// padding and trailing bytes (the kernel's probes carry payload on reads;
// aoecfg pads its queries) are tolerated. Fields that would make a frame
// ambiguous (a count that runs past the frame, a config string longer than
// 1024 bytes) are errors that wrap ErrShort or ErrInvalid, so callers can
// classify them with errors.Is.
//
// Parsing an ATA request (ParseFrame, ParseATA) and encoding an ATA reply
// (the Append methods into a buffer with spare capacity) allocate nothing.
package aoe
