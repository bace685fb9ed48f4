package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/pipeline"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder builds stages that log their name when they run.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func addN(r *recorder, name string, n int) middleware.Stage[int, int] {
	return func(_ context.Context, in int) (int, error) {
		r.add(name)
		return in + n, nil
	}
}

func failWith(r *recorder, name string, err error) middleware.Stage[int, int] {
	return func(context.Context, int) (int, error) {
		r.add(name)
		return 0, err
	}
}

func TestTypedChain(t *testing.T) {
	parse := pipeline.From("parse", func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) })
	sq := pipeline.Then(parse, "square", func(_ context.Context, n int) (int, error) { return n * n, nil })
	render := pipeline.Then(sq, "render", func(_ context.Context, n int) (string, error) { return "=" + strconv.Itoa(n), nil })

	got, err := render.Run(context.Background(), "12")
	if err != nil || got != "=144" {
		t.Fatalf("Run(12) = (%q, %v), want (=144, nil)", got, err)
	}
	if diff := cmp.Diff([]string{"parse", "square", "render"}, render.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if len(render.Names()) != 3 {
		t.Errorf("len(Names()) = %d, want 3", len(render.Names()))
	}

	_, err = render.Run(context.Background(), "x")
	var se *pipeline.StageError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StageError", err)
	}
	var numErr *strconv.NumError
	if !errors.As(err, &numErr) {
		t.Errorf("errors.As(*strconv.NumError) failed on %v", err)
	}
	if diff := cmp.Diff(pipeline.StageError{Name: "parse", Index: 0, Err: numErr}, *se, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("StageError (-want +got):\n%s", diff)
	}
}

func TestOrderAndShortCircuit(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		build   func(r *recorder) *pipeline.Pipeline[int, int]
		want    int
		wantErr *pipeline.StageError
		wantRan []string
	}{
		{
			name: "insertion order",
			build: func(r *recorder) *pipeline.Pipeline[int, int] {
				p := pipeline.From("a", addN(r, "a", 1))
				p = pipeline.Then(p, "b", addN(r, "b", 10))
				return pipeline.Then(p, "c", addN(r, "c", 100))
			},
			want:    116, // 5 + 1 + 10 + 100
			wantRan: []string{"a", "b", "c"},
		},
		{
			name: "first failure stops the rest",
			build: func(r *recorder) *pipeline.Pipeline[int, int] {
				p := pipeline.From("a", addN(r, "a", 1))
				p = pipeline.Then(p, "b", failWith(r, "b", boom))
				p = pipeline.Then(p, "c", addN(r, "c", 100))
				return pipeline.Then(p, "d", failWith(r, "d", errors.New("never")))
			},
			wantErr: &pipeline.StageError{Name: "b", Index: 1, Err: boom},
			wantRan: []string{"a", "b"},
		},
		{
			name: "failure in the first stage",
			build: func(r *recorder) *pipeline.Pipeline[int, int] {
				return pipeline.Then(pipeline.From("a", failWith(r, "a", boom)), "b", addN(r, "b", 1))
			},
			wantErr: &pipeline.StageError{Name: "a", Index: 0, Err: boom},
			wantRan: []string{"a"},
		},
		{
			name: "empty returns its input",
			build: func(*recorder) *pipeline.Pipeline[int, int] {
				return pipeline.Empty[int]()
			},
			want: 5,
		},
		{
			name: "Then on Empty starts at index 0",
			build: func(r *recorder) *pipeline.Pipeline[int, int] {
				return pipeline.Then(pipeline.Empty[int](), "a", failWith(r, "a", boom))
			},
			wantErr: &pipeline.StageError{Name: "a", Index: 0, Err: boom},
			wantRan: []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{}
			stage, err := tt.build(r).Stage()
			if err != nil {
				t.Fatal(err)
			}
			got, err := stage(context.Background(), 5)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if got != tt.want {
					t.Errorf("got %d, want %d", got, tt.want)
				}
			} else {
				var se *pipeline.StageError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want *StageError", err)
				}
				if diff := cmp.Diff(*tt.wantErr, *se, cmpopts.EquateErrors()); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
				if !errors.Is(err, boom) {
					t.Errorf("errors.Is(err, boom) = false")
				}
				if got != 0 {
					t.Errorf("output %d on failure, want the zero value", got)
				}
			}
			if diff := cmp.Diff(tt.wantRan, r.log); diff != "" {
				t.Errorf("stages run (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCancelledBetweenStages(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := pipeline.From("a", addN(r, "a", 1))
	p = pipeline.Then(p, "cancel", func(_ context.Context, in int) (int, error) {
		r.add("cancel")
		cancel()
		return in, nil
	})
	p = pipeline.Then(p, "c", addN(r, "c", 1))

	_, err := p.Run(ctx, 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var se *pipeline.StageError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StageError", err)
	}
	want := &pipeline.StageError{Name: "c", Index: 2, Skipped: true, Err: context.Canceled}
	if diff := cmp.Diff(*want, *se, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := err.Error(); got != `pipeline: before stage 2 "c": context canceled` {
		t.Errorf("Error() = %q", got)
	}
	if diff := cmp.Diff([]string{"a", "cancel"}, r.log); diff != "" {
		t.Errorf("stages run (-want +got):\n%s", diff)
	}

	// A context that has already ended runs no stage at all.
	r.log = nil
	_, err = p.Run(ctx, 0)
	if !errors.As(err, &se) || se.Index != 0 || !se.Skipped {
		t.Errorf("err = %v, want skipped before stage 0", err)
	}
	if len(r.log) != 0 {
		t.Errorf("stages ran on a cancelled context: %v", r.log)
	}
}

func TestErrorText(t *testing.T) {
	p := pipeline.Then(pipeline.From("a", addN(&recorder{}, "a", 1)), "b", failWith(&recorder{}, "b", errors.New("boom")))
	_, err := p.Run(context.Background(), 0)
	if got, want := err.Error(), `pipeline: stage 1 "b": boom`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// tag returns a middleware that records its name around each call.
func tag(r *recorder, name string) middleware.Middleware[int, int] {
	return func(next middleware.Stage[int, int]) middleware.Stage[int, int] {
		return func(ctx context.Context, in int) (int, error) {
			r.add(">" + name)
			out, err := next(ctx, in)
			r.add("<" + name)
			return out, err
		}
	}
}

func TestMiddlewarePerStageAndWhole(t *testing.T) {
	r := &recorder{}
	p := pipeline.From("a", addN(r, "a", 1), tag(r, "a1"), tag(r, "a2"))
	p = pipeline.Then(p, "b", addN(r, "b", 1), tag(r, "b1"))
	stage, err := p.Stage(tag(r, "all"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stage(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	want := []string{">all", ">a1", ">a2", "a", "<a2", "<a1", ">b1", "b", "<b1", "<all"}
	if diff := cmp.Diff(want, r.log); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// Nested pipelines: the error names the path of stages once, without a
// "pipeline:" prefix per level (issue 13 item 11), and errors.Is and
// errors.As still reach the cause and every level.
func TestNesting(t *testing.T) {
	boom := errors.New("boom")
	r := &recorder{}
	inner := pipeline.Then(pipeline.From("i0", addN(r, "i0", 1)), "i1", failWith(r, "i1", boom))
	innerStage, err := inner.Stage()
	if err != nil {
		t.Fatal(err)
	}
	outer := pipeline.Then(pipeline.From("o0", addN(r, "o0", 1)), "inner", innerStage)
	outerStage, err := outer.Stage()
	if err != nil {
		t.Fatal(err)
	}
	top := pipeline.From("outer", outerStage)

	// The inner pipeline's first stage cancels the call, so its second
	// stage is skipped: the outer pipeline reports it through the inner.
	cancelling := pipeline.Then(pipeline.From("cancel", func(ctx context.Context, in int) (int, error) {
		ctx.Value(cancelKey{}).(context.CancelFunc)()
		return in, nil
	}), "i1", addN(r, "i1", 1))
	cancellingStage, err := cancelling.Stage()
	if err != nil {
		t.Fatal(err)
	}
	skipsInside := pipeline.Then(pipeline.From("o0", addN(r, "o0", 1)), "inner", cancellingStage)

	tests := []struct {
		name string
		run  func() error
		text string
	}{
		{"two levels", func() error { _, err := outer.Run(context.Background(), 0); return err },
			`pipeline: stage 1 "inner" / stage 1 "i1": boom`},
		{"three levels", func() error { _, err := top.Run(context.Background(), 0); return err },
			`pipeline: stage 0 "outer" / stage 1 "inner" / stage 1 "i1": boom`},
		{"skipped inside", func() error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := skipsInside.Run(context.WithValue(ctx, cancelKey{}, cancel), 0)
			return err
		}, `pipeline: stage 1 "inner" / before stage 1 "i1": context canceled`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatal("no error")
			}
			if got := err.Error(); got != tt.text {
				t.Errorf("Error() = %q, want %q", got, tt.text)
			}
			if n := strings.Count(err.Error(), "pipeline:"); n != 1 {
				t.Errorf("Error() = %q names the package %d times, want once", err.Error(), n)
			}
		})
	}

	_, err = top.Run(context.Background(), 0)
	if !errors.Is(err, boom) {
		t.Error("errors.Is(err, boom) = false through three pipelines")
	}
	var se *pipeline.StageError
	var levels []string
	for e := err; errors.As(e, &se); e = se.Err {
		levels = append(levels, se.Name)
	}
	if diff := cmp.Diff([]string{"outer", "inner", "i1"}, levels); diff != "" {
		t.Errorf("StageError levels (-want +got):\n%s", diff)
	}
}

type cancelKey struct{}

// A StageError wrapped by another error between two levels keeps that
// error's text; a StageError whose Err is nil does not panic.
func TestStageErrorText(t *testing.T) {
	inner := &pipeline.StageError{Name: "in", Index: 2, Err: errors.New("boom")}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", inner, `pipeline: stage 2 "in": boom`},
		{"skipped", &pipeline.StageError{Name: "s", Index: 0, Skipped: true, Err: context.Canceled}, `pipeline: before stage 0 "s": context canceled`},
		{"nested skipped", &pipeline.StageError{Name: "out", Index: 1, Err: &pipeline.StageError{Name: "s", Skipped: true, Err: context.Canceled}},
			`pipeline: stage 1 "out" / before stage 0 "s": context canceled`},
		{"wrapped between levels", &pipeline.StageError{Name: "out", Index: 1, Err: fmt.Errorf("retry: gave up: %w", inner)},
			`pipeline: stage 1 "out": retry: gave up: pipeline: stage 2 "in": boom`},
		{"nil Err", &pipeline.StageError{Name: "x", Index: 3}, `pipeline: stage 3 "x": <nil>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestImmutableBranches(t *testing.T) {
	r := &recorder{}
	base := pipeline.Then(pipeline.From("a", addN(r, "a", 1)), "b", addN(r, "b", 1))
	left := pipeline.Then(base, "left", addN(r, "left", 10))
	right := pipeline.Then(base, "right", addN(r, "right", 100))

	if diff := cmp.Diff([]string{"a", "b", "left"}, left.Names()); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b", "right"}, right.Names()); diff != "" {
		t.Errorf("right (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b"}, base.Names()); diff != "" {
		t.Errorf("base changed (-want +got):\n%s", diff)
	}
	l, _ := left.Run(context.Background(), 0)
	rr, _ := right.Run(context.Background(), 0)
	if l != 12 || rr != 102 {
		t.Errorf("left = %d, right = %d, want 12 and 102", l, rr)
	}
	// Names returns a copy.
	names := base.Names()
	names[0] = "mutated"
	if base.Names()[0] != "a" {
		t.Error("Names exposes the pipeline's own slice")
	}
}

func TestBuildErrors(t *testing.T) {
	r := &recorder{}
	ok := addN(r, "ok", 1)
	tests := []struct {
		name string
		p    *pipeline.Pipeline[int, int]
		want *pipeline.BuildError
		text string
	}{
		{"empty name", pipeline.From("", ok), &pipeline.BuildError{Index: 0, Reason: "empty stage name"}, `pipeline: stage 0 "": empty stage name`},
		{"empty name in Then", pipeline.Then(pipeline.From("a", ok), "", ok), &pipeline.BuildError{Index: 1, Reason: "empty stage name"}, `pipeline: stage 1 "": empty stage name`},
		{"duplicate name", pipeline.Then(pipeline.Then(pipeline.From("a", ok), "b", ok), "a", ok),
			&pipeline.BuildError{Index: 2, Name: "a", Reason: "duplicate stage name (also stage 0)"}, `pipeline: stage 2 "a": duplicate stage name (also stage 0)`},
		{"error kept by later stages", pipeline.Then(pipeline.Then(pipeline.From("", ok), "b", ok), "c", ok), &pipeline.BuildError{Index: 0, Reason: "empty stage name"}, `pipeline: stage 0 "": empty stage name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var be *pipeline.BuildError
			if !errors.As(tt.p.Err(), &be) {
				t.Fatalf("Err() = %v, want *BuildError", tt.p.Err())
			}
			if diff := cmp.Diff(tt.want, be); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got := be.Error(); got != tt.text {
				t.Errorf("Error() = %q, want %q", got, tt.text)
			}
			if s, err := tt.p.Stage(); s != nil || !errors.As(err, &be) {
				t.Errorf("Stage() = (%v, %v), want (nil, *BuildError)", s != nil, err)
			}
			r.log = nil
			if _, err := tt.p.Run(context.Background(), 1); !errors.As(err, &be) {
				t.Errorf("Run() err = %v, want *BuildError", err)
			}
			if len(r.log) != 0 {
				t.Errorf("a broken pipeline ran stages: %v", r.log)
			}
		})
	}
	t.Run("same name in a nested pipeline or another branch", func(t *testing.T) {
		base := pipeline.From("a", ok)
		left, right := pipeline.Then(base, "b", ok), pipeline.Then(base, "b", ok)
		inner, err := left.Stage()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*pipeline.Pipeline[int, int]{left, right, pipeline.Then(right, "inner", inner), pipeline.From("a", inner)} {
			if err := p.Err(); err != nil {
				t.Errorf("%v: Err() = %v, want nil", p.Names(), err)
			}
		}
	})
	t.Run("Err is a nil interface when there is no error", func(t *testing.T) {
		if err := pipeline.From("a", ok).Err(); err != nil {
			t.Errorf("Err() = %#v, want nil", err)
		}
	})
}

// A nil stage, middleware or pipeline is a programmer error: building
// panics at once, even on a pipeline that is already broken, rather than
// returning a pipeline whose every call fails.
func TestNilPanics(t *testing.T) {
	ok := addN(&recorder{}, "ok", 1)
	var nilPipeline *pipeline.Pipeline[int, int]
	broken := pipeline.From("", ok)
	tests := []struct {
		name  string
		build func()
		want  string
	}{
		{"From nil stage", func() { pipeline.From[int, int]("a", nil) }, "middleware: nil stage"},
		{"Then nil stage", func() { pipeline.Then[int, int, int](pipeline.From("a", ok), "b", nil) }, "middleware: nil stage"},
		{"Then nil stage on a broken pipeline", func() { pipeline.Then[int, int, int](broken, "b", nil) }, "middleware: nil stage"},
		{"From nil middleware", func() { pipeline.From("a", ok, nil) }, "middleware: nil middleware"},
		{"Then nil middleware", func() { pipeline.Then(pipeline.From("a", ok), "b", ok, tag(&recorder{}, "t"), nil) }, "middleware: nil middleware"},
		{"Stage nil middleware", func() { _, _ = pipeline.From("a", ok).Stage(nil) }, "middleware: nil middleware"},
		{"Then on nil pipeline", func() { pipeline.Then(nilPipeline, "a", ok) }, "pipeline: nil *Pipeline"},
		{"Stage on nil pipeline", func() { _, _ = nilPipeline.Stage() }, "pipeline: nil *Pipeline"},
		{"Run on nil pipeline", func() { _, _ = nilPipeline.Run(context.Background(), 0) }, "pipeline: nil *Pipeline"},
		{"Err on nil pipeline", func() { _ = nilPipeline.Err() }, "pipeline: nil *Pipeline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := panicText(tt.build); !strings.HasPrefix(got, tt.want) {
				t.Errorf("panic = %q, want it to start with %q", got, tt.want)
			}
		})
	}
	t.Run("Names on nil pipeline", func(t *testing.T) {
		if len(nilPipeline.Names()) != 0 || nilPipeline.Names() != nil {
			t.Error("a nil pipeline reports stages")
		}
	})
}

// panicText runs f and returns what it panicked with, as text, or "" if it
// did not panic.
func panicText(f func()) (text string) {
	defer func() {
		if v := recover(); v != nil {
			text = fmt.Sprint(v)
		}
	}()
	f()
	return ""
}

func TestConcurrentUse(t *testing.T) {
	p := pipeline.Then(pipeline.From("a", func(_ context.Context, in int) (int, error) { return in + 1, nil }), "b",
		func(_ context.Context, in int) (string, error) { return strconv.Itoa(in), nil })
	stage, err := p.Stage()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Go(func() {
			out, err := stage(context.Background(), i)
			if err != nil || out != strconv.Itoa(i+1) {
				errs <- errors.New("bad result " + out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	p := pipeline.From("s0", inc)
	for i := 1; i < 5; i++ {
		p = pipeline.Then(p, "s"+strconv.Itoa(i), inc)
	}
	stage, err := p.Stage()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"background", context.Background()}, {"cancellable", ctx}} {
		if n := testing.AllocsPerRun(1000, func() { _, _ = stage(c.ctx, 1) }); n != 0 {
			t.Errorf("%s: 5-stage pipeline: %v allocs per call, want 0", c.name, n)
		}
	}
}

func inc(_ context.Context, in int) (int, error) { return in + 1, nil }
