package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/pipeline"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var errFuzzStage = errors.New("fuzz: stage failed")

// spec is what a built pipeline should be, computed independently of the
// package: its names, its first build error, and what running it on 0
// returns.
type spec struct {
	names    []string
	badIndex int // index of the first invalid stage; -1 if none
	badName  string
	sum      int // Run(ctx, 0) when nothing fails
	failAt   int // index of the first failing stage; -1 if none
}

// FuzzBuild builds pipelines from a program of From and Then steps, each
// with a valid, empty or duplicate name, a valid, failing or nil stage, and
// no, a valid or a nil middleware, and branches from any earlier pipeline.
// A nil stage or middleware must panic with the core's message and build
// nothing; otherwise each result must be a *BuildError naming the first bad
// name, or a pipeline whose Names and Run match the spec. A branch
// never changes the pipeline it grew from.
func FuzzBuild(f *testing.F) {
	f.Add([]byte{0x00, 0x10, 0x20})
	f.Add([]byte{0x01, 0x12, 0x24, 0x05})
	f.Add([]byte{0x00, 0x03, 0x10, 0x13, 0x08})
	f.Add([]byte{0x00, 0x40, 0x40, 0x50, 0x60, 0x0c, 0x10})
	f.Add([]byte{0x80, 0x00, 0x90, 0x0a})
	f.Add([]byte{0xe0, 0x0c, 0x2c, 0x01}) // duplicate names
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 64 {
			return
		}
		type built struct {
			p *pipeline.Pipeline[int, int]
			s spec
		}
		var all []built
		for step, op := range prog {
			// op: bits 0-1 stage kind (3: nil), bits 2-3 middleware kind
			// (1: valid, 2: nil, 3: none, and the name of the pipeline's
			// first stage), bit 4 empty name, bits 5-7 which earlier
			// pipeline to extend (7: start a new one with From, 6: from
			// Empty).
			stageKind, mwKind, emptyName, base := op&3, (op>>2)&3, op&0x10 != 0, int(op>>5)
			add := step + 1
			var s middleware.Stage[int, int]
			switch stageKind {
			case 0, 1:
				s = func(_ context.Context, in int) (int, error) { return in + add, nil }
			case 2:
				s = func(context.Context, int) (int, error) { return 0, errFuzzStage }
			}
			var mws []middleware.Middleware[int, int]
			switch mwKind {
			case 1:
				mws = append(mws, func(next middleware.Stage[int, int]) middleware.Stage[int, int] {
					return func(ctx context.Context, in int) (int, error) {
						out, err := next(ctx, in)
						return out + 1000, err
					}
				})
			case 2:
				mws = append(mws, nil)
			}

			prev := built{s: spec{badIndex: -1, failAt: -1}} // From: no pipeline before
			switch {
			case base == 6 || len(all) == 0 && base != 7:
				prev = built{pipeline.Empty[int](), spec{badIndex: -1, failAt: -1}}
			case base < 6 && len(all) > 0:
				prev = all[base%len(all)]
			}
			name := "s" + strconv.Itoa(step)
			switch {
			case emptyName:
				name = ""
			case mwKind == 3 && len(prev.s.names) > 0:
				name = prev.s.names[0]
			}
			next := spec{badIndex: prev.s.badIndex, badName: prev.s.badName, sum: prev.s.sum, failAt: prev.s.failAt}
			var p *pipeline.Pipeline[int, int]
			msg := panicText(func() {
				if prev.p == nil {
					p = pipeline.From(name, s, mws...)
				} else {
					p = pipeline.Then(prev.p, name, s, mws...)
				}
			})
			if s == nil || mwKind == 2 {
				if !strings.HasPrefix(msg, "middleware: nil ") || p != nil {
					t.Fatalf("step %d: a nil stage or middleware: panic %q and pipeline %v, want a panic \"middleware: nil ...\" and nothing built", step, msg, p)
				}
				continue
			}
			if msg != "" {
				t.Fatalf("step %d: unexpected panic %q", step, msg)
			}
			if next.badIndex >= 0 {
				next.names = prev.s.names // a broken pipeline is not extended
			} else {
				index := len(prev.s.names)
				next.names = append(append([]string(nil), prev.s.names...), name)
				switch {
				case name == "" || slices.Contains(prev.s.names, name):
					next.badIndex, next.badName = index, name
				case stageKind == 2 && next.failAt < 0:
					next.failAt = index
				case next.failAt < 0:
					next.sum += add
					if mwKind == 1 {
						next.sum += 1000
					}
				}
			}
			all = append(all, built{p, next})
		}
		// Check every pipeline at the end, so that a branch that changed
		// its parent would show.
		for i, b := range all {
			check(t, i, b.p, b.s)
		}
	})
}

func check(t *testing.T, i int, p *pipeline.Pipeline[int, int], want spec) {
	t.Helper()
	if diff := cmp.Diff(want.names, p.Names(), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("pipeline %d: names (-want +got):\n%s", i, diff)
	}
	if len(p.Names()) != len(want.names) {
		t.Fatalf("pipeline %d: len(Names()) = %d, want %d", i, len(p.Names()), len(want.names))
	}
	ctx := context.Background()
	out, runErr := p.Run(ctx, 0)
	stage, stageErr := p.Stage()
	if want.badIndex >= 0 {
		var be *pipeline.BuildError
		if !errors.As(p.Err(), &be) || be.Index != want.badIndex || be.Name != want.badName || be.Reason == "" {
			t.Fatalf("pipeline %d: Err() = %v, want a *BuildError for stage %d %q", i, p.Err(), want.badIndex, want.badName)
		}
		if runErr != p.Err() || stageErr != p.Err() || stage != nil {
			t.Fatalf("pipeline %d: Run and Stage return %v and %v, want the build error %v", i, runErr, stageErr, p.Err())
		}
		return
	}
	if p.Err() != nil || stageErr != nil {
		t.Fatalf("pipeline %d: unexpected build error %v / %v", i, p.Err(), stageErr)
	}
	if out2, err2 := stage(ctx, 0); out2 != out || fmt.Sprint(err2) != fmt.Sprint(runErr) {
		t.Fatalf("pipeline %d: Stage() returns %d, %v; Run returns %d, %v", i, out2, err2, out, runErr)
	}
	if want.failAt >= 0 {
		var se *pipeline.StageError
		if !errors.As(runErr, &se) || se.Index != want.failAt || se.Name != want.names[want.failAt] || !errors.Is(runErr, errFuzzStage) {
			t.Fatalf("pipeline %d: Run error %v, want a *StageError for stage %d", i, runErr, want.failAt)
		}
		return
	}
	if runErr != nil || out != want.sum {
		t.Fatalf("pipeline %d: Run = %d, %v; want %d, nil", i, out, runErr, want.sum)
	}
	if len(want.names) > 0 {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		var se *pipeline.StageError
		if _, err := p.Run(cctx, 0); !errors.As(err, &se) || !se.Skipped || se.Index != 0 || !errors.Is(err, context.Canceled) {
			t.Fatalf("pipeline %d: Run with a cancelled context = %v, want a skipped *StageError at stage 0", i, err)
		}
	}
}
