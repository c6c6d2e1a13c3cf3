package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "report" {
		return runReport(args[1:], stdout, stderr)
	}
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "aoebench: %v (see aoebench --help)\n", err)
		return exitUsage
	}
	if o.help {
		fmt.Fprint(stdout, usageText)
		fmt.Fprint(stdout, flagUsages())
		return exitOK
	}
	r, err := bench(ctx, o, stderr)
	if err != nil {
		var ue *usageError
		fmt.Fprintf(stderr, "aoebench: %v\n", err)
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitError
	}
	if o.json {
		b, err := json.Marshal(r)
		if err != nil {
			fmt.Fprintf(stderr, "aoebench: %v\n", err)
			return exitError
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		r.writeText(stdout)
	}
	if r.failed() {
		fmt.Fprintf(stderr, "aoebench: the target answered with errors or wrong data (see above)\n")
		return exitError
	}
	return exitOK
}
