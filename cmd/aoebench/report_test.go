package main

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func res(caseName, name string, iops, cpu float64, seq bool) *Result {
	r := &Result{Case: caseName, Name: name, IOPS: iops, MBps: iops * 4096 / 1e6, FramesPerS: iops * 4}
	r.Config.Pattern = "random"
	if seq {
		r.Config.Pattern = "seq"
	}
	r.Config.RW, r.Config.BlockSize, r.Config.FramesPerIO, r.Config.FrameSectors = "read", 4096, 4, 2
	r.Config.Window, r.Config.MTU, r.Config.Duration, r.Config.Warmup = 32, 1500, 5, 1
	if cpu > 0 {
		r.TargetCPUPerMFrame = &cpu
	}
	return r
}

func TestStatOf(t *testing.T) {
	tests := []struct {
		vals          []float64
		med, min, max float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 2, 3}, 2.5, 1, 4},
		{[]float64{7}, 7, 7, 7},
	}
	for _, tt := range tests {
		var runs []*Result
		for _, v := range tt.vals {
			runs = append(runs, &Result{IOPS: v})
		}
		s := statOf(runs, metrics["iops"])
		if s.med != tt.med || s.min != tt.min || s.max != tt.max || s.n != len(tt.vals) {
			t.Errorf("statOf(%v) = %+v, want median %v, min %v, max %v", tt.vals, s, tt.med, tt.min, tt.max)
		}
	}
	if s := statOf([]*Result{{}}, metrics["cpu"]); s.n != 0 {
		t.Errorf("statOf of runs without CPU figures = %+v", s)
	}
}

func TestParseGoal(t *testing.T) {
	g, err := parseGoal("Durable writes|iops|writes|aoetarget|writes|vblade -s|>=|10")
	if err != nil {
		t.Fatal(err)
	}
	if g.title != "Durable writes" || g.metric != "iops" || g.caseName != "writes" || g.name != "aoetarget" ||
		g.refCase != "writes" || g.refName != "vblade -s" || g.op != ">=" || g.threshold != 10 {
		t.Errorf("parseGoal = %+v", g)
	}
	for _, bad := range []string{
		"a|iops|b|c|d|e|>=",     // 7 fields
		"a|bogus|b|c|d|e|>=|1",  // metric
		"a|iops|b|c|d|e|>|1",    // op
		"a|iops|b|c|d|e|>=|ten", // threshold
	} {
		if _, err := parseGoal(bad); err == nil {
			t.Errorf("parseGoal(%q) succeeded", bad)
		}
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "r.jsonl")
	var lines []string
	for _, r := range []*Result{
		res("warm reads", "null", 90000, 2, false), res("warm reads", "null", 92000, 2, false), res("warm reads", "null", 91000, 2, false),
		res("warm reads", "vblade", 80000, 3, false), res("warm reads", "vblade", 81000, 3, false), res("warm reads", "vblade", 79000, 3, false),
		res("warm reads", "aoetarget", 88000, 2.5, false), res("warm reads", "aoetarget", 87000, 2.5, false), res("warm reads", "aoetarget", 89000, 2.5, false),
		res("seq <jumbo> & reads", "null", 500000, 0, true), res("seq <jumbo> & reads", "aoetarget", 450000, 0, true),
	} {
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	busy := res("warm reads", "vblade", 80500, 3, false)
	busy.OtherCores = 0.9
	b, _ := json.Marshal(busy)
	lines = append(lines, "", string(b))
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	svgFile := filepath.Join(dir, "chart.svg")
	var out, errw strings.Builder
	code := run(t.Context(), []string{"report", "--svg", svgFile,
		"--goal", "warm vs ceiling|iops|warm reads|aoetarget|warm reads|null|>=|0.95",
		"--goal", "warm vs vblade|iops|warm reads|aoetarget|warm reads|vblade|>=|1",
		"--goal", "cpu|cpu|warm reads|aoetarget|warm reads|vblade|<=|1",
		"--goal", "missing|iops|nope|aoetarget|warm reads|vblade|>=|1",
		file}, &out, &errw)
	if code != exitOK {
		t.Fatalf("report exits %d: %s", code, errw.String())
	}
	md := out.String()
	for _, want := range []string{
		"| warm vs ceiling | **0.97×** (88,000 / 91,000 IOPS) | >= 0.95× | **yes** |",
		"| warm vs vblade | **1.10×** (88,000 / 80,250 IOPS) | >= 1.00× | **yes** |",
		"| cpu | **0.83×**",
		"| missing | not measured",
		"### warm reads",
		"| aoetarget | 3 | 88,000 (87,000–89,000) |",
		"| vblade | 4 (1 busy) | 80,250 (79,000–81,000) |",
		"| – / 0.00 | 97 % | 0 / 0 |",
		"vs ceiling (MB/s)", // the sequential case
		"random read, 4 KiB per I/O (4 frame(s) of up to 2 sectors), window 32, MTU 1500",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	svg, err := os.ReadFile(svgFile)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	rects := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects != 1+5 { // background and one bar per row
		t.Errorf("chart has %d rects, want 6", rects)
	}
	if !strings.Contains(string(svg), "seq &lt;jumbo&gt; &amp; reads") {
		t.Error("chart does not escape the case name")
	}
}

func TestReportUsage(t *testing.T) {
	var out, errw strings.Builder
	if code := run(t.Context(), []string{"report"}, &out, &errw); code != exitUsage {
		t.Errorf("report without files exits %d", code)
	}
	if code := run(t.Context(), []string{"report", "--goal", "x", "f"}, &out, &errw); code != exitUsage {
		t.Errorf("report with a bad goal exits %d", code)
	}
	if code := run(t.Context(), []string{"report", filepath.Join(t.TempDir(), "missing")}, &out, &errw); code != exitError {
		t.Errorf("report of a missing file exits %d", code)
	}
}

func TestReportRawDropCases(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "r.jsonl")
	var lines []string
	for _, r := range []*Result{res("a", "x", 1, 0, false), res("b", "x", 2, 0, false), res("a", "y", 3, 0, false), res("c", "x", 4, 0, false)} {
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	drop := filepath.Join(dir, "drop")
	if err := os.WriteFile(drop, []byte("a\n\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errw strings.Builder
	if code := run(t.Context(), []string{"report", "--raw", "--drop-cases", drop, file}, &out, &errw); code != exitOK {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	if got := out.String(); got != lines[1]+"\n" {
		t.Errorf("kept:\n%s\nwant only case b:\n%s", got, lines[1])
	}
}
