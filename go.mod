module github.com/aoetarget/aoetarget

go 1.26.8

require (
	github.com/google/go-cmp v0.7.0
	github.com/mdlayher/packet v1.2.0
	github.com/mdlayher/socket v0.7.0
	github.com/spf13/pflag v1.1.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
)

require golang.org/x/sync v0.23.0 // indirect
