package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

const reportUsage = `usage: aoebench report [--svg file] [--ceiling name] [--goal spec]... results.jsonl...
       aoebench report --raw --drop-cases file results.jsonl...

Reads the JSON lines of runs made with aoebench --json --case C --name N
and prints Markdown: per case, a row per name with the median of its runs
(minimum-maximum for IOPS and MB/s), and a table of goals. With --svg it
also writes a bar chart of every case.

A goal is "title|metric|case|name|ref case|ref name|op|threshold": the
median metric (iops, mbs, fps or cpu, the target's CPU seconds per million
frames) of case/name divided by that of ref case/ref name, compared with op
(>= or <=) to threshold.

With --raw it prints the runs it read as JSON lines instead, leaving out
the cases named in --drop-cases: hack/bench --merge uses that to replace
the runs of the cases it runs again.

Flags:
`

// goal is one ratio the report checks.
type goal struct {
	title, metric        string
	caseName, name       string
	refCase, refName     string
	op                   string
	threshold            float64
	ratio, value, refVal float64
	ok, known            bool
}

func parseGoal(s string) (goal, error) {
	f := strings.Split(s, "|")
	if len(f) != 8 {
		return goal{}, fmt.Errorf("goal %q: want 8 fields separated by |, got %d", s, len(f))
	}
	g := goal{title: f[0], metric: f[1], caseName: f[2], name: f[3], refCase: f[4], refName: f[5], op: f[6]}
	if _, ok := metrics[g.metric]; !ok {
		return goal{}, fmt.Errorf("goal %q: metric %q is not iops, mbs, fps or cpu", s, g.metric)
	}
	if g.op != ">=" && g.op != "<=" {
		return goal{}, fmt.Errorf("goal %q: op %q is not >= or <=", s, g.op)
	}
	t, err := strconv.ParseFloat(f[7], 64)
	if err != nil {
		return goal{}, fmt.Errorf("goal %q: threshold %q is not a number", s, f[7])
	}
	g.threshold = t
	return g, nil
}

// metrics read one figure of a run; false when the run lacks it.
var metrics = map[string]func(*Result) (float64, bool){
	"iops": func(r *Result) (float64, bool) { return r.IOPS, true },
	"mbs":  func(r *Result) (float64, bool) { return r.MBps, true },
	"fps":  func(r *Result) (float64, bool) { return r.FramesPerS, true },
	"cpu": func(r *Result) (float64, bool) {
		if r.TargetCPUPerMFrame == nil {
			return 0, false
		}
		return *r.TargetCPUPerMFrame, true
	},
}

// reportCase is the runs of one case, by name, in the order they came.
type reportCase struct {
	name string
	rows []*reportRow
}

type reportRow struct {
	name string
	runs []*Result
}

// stat is the median, minimum and maximum of a figure over runs.
type stat struct {
	med, min, max float64
	n             int
}

func statOf(runs []*Result, f func(*Result) (float64, bool)) stat {
	var v []float64
	for _, r := range runs {
		if x, ok := f(r); ok {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return stat{}
	}
	slices.Sort(v)
	s := stat{min: v[0], max: v[len(v)-1], n: len(v)}
	if len(v)%2 == 1 {
		s.med = v[len(v)/2]
	} else {
		s.med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return s
}

// report is the runs read, grouped.
type report struct {
	cases   []*reportCase
	ceiling string
	busy    float64
	drop    map[string]bool // cases left out
	raw     io.Writer       // where the runs kept are copied, as read
}

func (rp *report) add(r *Result) {
	var c *reportCase
	for _, x := range rp.cases {
		if x.name == r.Case {
			c = x
		}
	}
	if c == nil {
		c = &reportCase{name: r.Case}
		rp.cases = append(rp.cases, c)
	}
	var row *reportRow
	for _, x := range c.rows {
		if x.name == r.Name {
			row = x
		}
	}
	if row == nil {
		row = &reportRow{name: r.Name}
		c.rows = append(c.rows, row)
	}
	row.runs = append(row.runs, r)
}

func (rp *report) row(caseName, name string) *reportRow {
	for _, c := range rp.cases {
		if c.name == caseName {
			for _, r := range c.rows {
				if r.name == name {
					return r
				}
			}
		}
	}
	return nil
}

// readResults reads JSON lines of Results; blank lines are skipped.
func readResults(r io.Reader, rp *report) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		b := strings.TrimSpace(sc.Text())
		if b == "" {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(b), &res); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if rp.drop[res.Case] {
			continue
		}
		if rp.raw != nil {
			fmt.Fprintln(rp.raw, b)
		}
		rp.add(&res)
	}
	return sc.Err()
}

// seqCase reports whether a case is measured in MB/s rather than IOPS:
// sequential runs.
func (c *reportCase) seq() bool {
	for _, r := range c.rows {
		for _, x := range r.runs {
			if x.Config.Pattern == "seq" {
				return true
			}
		}
	}
	return false
}

func (c *reportCase) primary() (string, func(*Result) (float64, bool)) {
	if c.seq() {
		return "MB/s", metrics["mbs"]
	}
	return "IOPS", metrics["iops"]
}

// busyRuns counts the runs during which other processes used more than
// limit cores or the hypervisor stole more than a tenth of a core.
func busyRuns(runs []*Result, limit float64) int {
	n := 0
	for _, r := range runs {
		if r.OtherCores > limit || r.StealCores > 0.1 {
			n++
		}
	}
	return n
}

func runReport(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("aoebench report", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	svg := fs.String("svg", "", "also write a bar chart of every case to this file")
	ceiling := fs.String("ceiling", "null", "the name of the ceiling's rows (the \"vs ceiling\" column)")
	goals := fs.StringArray("goal", nil, "a ratio to check (see above); repeatable")
	busy := fs.Float64("busy", 0.25, "mark runs during which other processes used more than this many cores")
	raw := fs.Bool("raw", false, "print the runs read, as JSON lines, instead of the report (with --drop-cases)")
	drop := fs.String("drop-cases", "", "leave out the runs of the cases named in this file, one per line")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "aoebench report: %v\n", err)
		return exitUsage
	}
	if *help {
		fmt.Fprint(stdout, reportUsage+fs.FlagUsages())
		return exitOK
	}
	var gs []goal
	for _, s := range *goals {
		g, err := parseGoal(s)
		if err != nil {
			fmt.Fprintf(stderr, "aoebench report: %v\n", err)
			return exitUsage
		}
		gs = append(gs, g)
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "aoebench report: no result files\n")
		return exitUsage
	}
	rp := &report{ceiling: *ceiling, busy: *busy}
	if *drop != "" {
		b, err := os.ReadFile(*drop)
		if err != nil {
			fmt.Fprintf(stderr, "aoebench report: %v\n", err)
			return exitError
		}
		rp.drop = map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				rp.drop[l] = true
			}
		}
	}
	if *raw {
		rp.raw = stdout
	}
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "aoebench report: %v\n", err)
			return exitError
		}
		err = readResults(f, rp)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "aoebench report: %s: %v\n", name, err)
			return exitError
		}
	}
	if *raw {
		return exitOK
	}
	rp.evalGoals(gs)
	rp.writeMarkdown(stdout, gs)
	if *svg != "" {
		if err := os.WriteFile(*svg, []byte(rp.svg()), 0o644); err != nil {
			fmt.Fprintf(stderr, "aoebench report: %v\n", err)
			return exitError
		}
	}
	return exitOK
}

// evalGoals computes the goals' ratios from the medians.
func (rp *report) evalGoals(gs []goal) {
	for i := range gs {
		g := &gs[i]
		a, b := rp.row(g.caseName, g.name), rp.row(g.refCase, g.refName)
		if a == nil || b == nil {
			continue
		}
		m := metrics[g.metric]
		sa, sb := statOf(a.runs, m), statOf(b.runs, m)
		if sa.n == 0 || sb.n == 0 || sb.med == 0 {
			continue
		}
		g.value, g.refVal, g.ratio, g.known = sa.med, sb.med, sa.med/sb.med, true
		if g.op == ">=" {
			g.ok = g.ratio >= g.threshold
		} else {
			g.ok = g.ratio <= g.threshold
		}
	}
}

var metricUnits = map[string]string{"iops": "IOPS", "mbs": "MB/s", "fps": "frames/s", "cpu": "CPU s per 10⁶ frames"}

// writeMarkdown prints the goals, then a table per case.
func (rp *report) writeMarkdown(w io.Writer, gs []goal) {
	if len(gs) > 0 {
		fmt.Fprintf(w, "### Goals (ratios of medians; both sides of each ratio were measured in the same invocation, interleaved)\n\n")
		fmt.Fprintf(w, "| Goal | Measured | Wanted | Met |\n|---|---|---|---|\n")
		for _, g := range gs {
			if !g.known {
				fmt.Fprintf(w, "| %s | not measured in this run | %s %s | – |\n", g.title, g.op, fmtRatio(g.threshold))
				continue
			}
			met := "no"
			if g.ok {
				met = "**yes**"
			}
			fmt.Fprintf(w, "| %s | **%s** (%s / %s %s) | %s %s | %s |\n", g.title, fmtRatio(g.ratio),
				fmtNum(g.value), fmtNum(g.refVal), metricUnits[g.metric], g.op, fmtRatio(g.threshold), met)
		}
		fmt.Fprintln(w)
	}
	for _, c := range rp.cases {
		rp.writeCase(w, c)
	}
}

func (rp *report) writeCase(w io.Writer, c *reportCase) {
	fmt.Fprintf(w, "### %s\n\n", c.name)
	if len(c.rows) > 0 && len(c.rows[0].runs) > 0 {
		r := c.rows[0].runs[0]
		cf := r.Config
		fmt.Fprintf(w, "%s %s, %s per I/O (%d frame(s) of up to %d sectors), window %d, MTU %d, %g s per run after %g s warmup.\n\n",
			cf.Pattern, cf.RW, sizeText(cf.BlockSize), cf.FramesPerIO, cf.FrameSectors, cf.Window, cf.MTU, cf.Duration, cf.Warmup)
	}
	unit, prim := c.primary()
	var ceil stat
	if row := rp.rowIn(c, rp.ceiling); row != nil {
		ceil = statOf(row.runs, prim)
	}
	fmt.Fprintf(w, "| Target | Runs | IOPS median (min–max) | MB/s median (min–max) | frames/s | Latency p50 / p99 / p99.9 | Target CPU s per 10⁶ frames | Cores used: target / aoebench | vs ceiling (%s) | Retransmits / errors |\n", unit)
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range c.rows {
		iops := statOf(row.runs, metrics["iops"])
		mbs := statOf(row.runs, metrics["mbs"])
		fps := statOf(row.runs, metrics["fps"])
		p50 := statOf(row.runs, func(r *Result) (float64, bool) { return r.Latency.P50, true })
		p99 := statOf(row.runs, func(r *Result) (float64, bool) { return r.Latency.P99, true })
		p999 := statOf(row.runs, func(r *Result) (float64, bool) { return r.Latency.P999, true })
		cpu := statOf(row.runs, metrics["cpu"])
		tcores := statOf(row.runs, func(r *Result) (float64, bool) {
			if r.TargetCores == nil {
				return 0, false
			}
			return *r.TargetCores, true
		})
		gcores := statOf(row.runs, func(r *Result) (float64, bool) { return r.GenCores, true })
		cores := "– / " + fmt.Sprintf("%.2f", gcores.med)
		if tcores.n > 0 {
			cores = fmt.Sprintf("%.2f / %.2f", tcores.med, gcores.med)
		}
		var retx, errs uint64
		for _, r := range row.runs {
			retx += r.Retransmits
			errs += r.AoEErrors + r.ATAErrors + r.ShortReads + r.VerifyErrs
		}
		vs := "–"
		if p := statOf(row.runs, prim); ceil.med > 0 && row.name != rp.ceiling {
			vs = fmt.Sprintf("%.0f %%", 100*p.med/ceil.med)
		}
		cpuText := "–"
		if cpu.n > 0 {
			cpuText = fmt.Sprintf("%.2f", cpu.med)
		}
		runs := strconv.Itoa(len(row.runs))
		if b := busyRuns(row.runs, rp.busy); b > 0 {
			runs += fmt.Sprintf(" (%d busy)", b)
		}
		fmt.Fprintf(w, "| %s | %s | %s (%s–%s) | %s (%s–%s) | %s | %s / %s / %s | %s | %s | %s | %d / %d |\n",
			row.name, runs, fmtNum(iops.med), fmtNum(iops.min), fmtNum(iops.max),
			fmtNum(mbs.med), fmtNum(mbs.min), fmtNum(mbs.max), fmtNum(fps.med),
			us(p50.med), us(p99.med), us(p999.med), cpuText, cores, vs, retx, errs)
	}
	fmt.Fprintln(w)
}

func (rp *report) rowIn(c *reportCase, name string) *reportRow {
	for _, r := range c.rows {
		if r.name == name {
			return r
		}
	}
	return nil
}

func sizeText(b int) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1024 && b%1024 == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%d bytes", b)
}

// fmtNum formats a figure with three significant digits or so, and
// thousands separators above 1000.
func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return thousands(v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtRatio(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// svg draws a panel per case: a horizontal bar per name at its median,
// with a line from its minimum to its maximum.
func (rp *report) svg() string {
	const (
		barW    = 520
		valueW  = 90 // room for the value after the longest bar
		rowH    = 22
		titleH  = 30
		padding = 14
		charW   = 7 // a generous average width of a 12-px sans-serif character
	)
	var b strings.Builder
	height := padding
	longest, titleLen := 0, 0
	for _, c := range rp.cases {
		height += titleH + rowH*len(c.rows) + padding
		titleLen = max(titleLen, len([]rune(c.name))+45)
		for _, r := range c.rows {
			longest = max(longest, len([]rune(r.name)))
		}
	}
	labelW := min(max(longest*charW+16, 120), 480)
	width := max(labelW+barW+valueW, titleLen*8+20)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	y := padding
	for _, c := range rp.cases {
		unit, prim := c.primary()
		fmt.Fprintf(&b, `<text x="10" y="%d" font-size="14" font-weight="bold">%s (%s, median of runs, line: min–max)</text>`+"\n",
			y+18, xmlEscape(c.name), unit)
		y += titleH
		var top float64
		for _, row := range c.rows {
			top = max(top, statOf(row.runs, prim).max)
		}
		if top <= 0 {
			top = 1
		}
		for _, row := range c.rows {
			s := statOf(row.runs, prim)
			scale := func(v float64) float64 { return float64(labelW) + v/top*barW }
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+15, xmlEscape(row.name))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
				labelW, y+3, scale(s.med)-float64(labelW), rowH-6, barColor(row.name, rp.ceiling))
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="black" stroke-width="1.5"/>`+"\n",
				scale(s.min), scale(s.max), y+rowH/2, y+rowH/2)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", scale(s.max)+6, y+15, fmtNum(s.med))
			y += rowH
		}
		y += padding
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func barColor(name, ceiling string) string {
	switch {
	case name == ceiling:
		return "#9e9e9e"
	case strings.HasPrefix(name, "vblade"):
		return "#e08a2c"
	case strings.HasPrefix(name, "aoetarget"):
		return "#2f6db5"
	}
	return "#6a9955"
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
