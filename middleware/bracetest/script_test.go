package bracetest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/brace-go/brace/middleware/bracetest"
)

func TestScript(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := bracetest.NewScript[int](
			bracetest.Fail[string](errBoom),
			bracetest.Step[string]{Out: "late", Delay: time.Second},
			bracetest.Return("ok"),
		)
		type call struct {
			Out     string
			Err     error
			Elapsed time.Duration
		}
		var got []call
		for i := range 4 {
			start := time.Now()
			out, err := s.Stage(t.Context(), i*10)
			got = append(got, call{out, err, time.Since(start)})
		}
		want := []call{
			{Err: errBoom},
			{Out: "late", Elapsed: time.Second},
			{Out: "ok"},
			{Err: bracetest.ErrScriptEnded},
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff("bracetest: script ended: call 4 of 3 scripted", got[3].Err.Error()); diff != "" {
			t.Errorf("error text (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int{0, 10, 20, 30}, s.Inputs()); diff != "" {
			t.Errorf("Inputs (-want +got):\n%s", diff)
		}
		if n := len(s.Inputs()); n != 4 {
			t.Errorf("len(Inputs()) = %d; want 4", n)
		}
	})
}

func TestScriptContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := bracetest.NewScript[int](
			bracetest.Step[string]{Out: "never", Delay: time.Hour},
			bracetest.Step[string]{Hang: true},
		)
		for i, want := range []time.Duration{time.Second, time.Second} {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			start := time.Now()
			out, err := s.Stage(ctx, 0)
			cancel()
			if out != "" || err != context.DeadlineExceeded || time.Since(start) != want {
				t.Errorf("step %d: %q, %v after %v; want DeadlineExceeded after %v", i, out, err, time.Since(start), want)
			}
		}
	})
}

func TestScriptPanic(t *testing.T) {
	s := bracetest.NewScript[int](bracetest.Step[string]{Panic: errBoom})
	defer func() {
		if v := recover(); v != errBoom {
			t.Errorf("recovered %v; want boom", v)
		}
	}()
	s.Stage(t.Context(), 0)
	t.Fatal("no panic")
}

// TestScriptConcurrent: each of 1000 concurrent calls plays exactly one
// step.
func TestScriptConcurrent(t *testing.T) {
	steps := make([]bracetest.Step[int], 1000)
	for i := range steps {
		steps[i] = bracetest.Return(i)
	}
	s := bracetest.NewScript[int](steps...)
	seen := make([]bool, len(steps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range steps {
		wg.Go(func() {
			out, err := s.Stage(context.Background(), 0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[out] {
				t.Errorf("step %d played twice", out)
			}
			seen[out] = true
		})
	}
	wg.Wait()
	if _, err := s.Stage(context.Background(), 0); !errors.Is(err, bracetest.ErrScriptEnded) {
		t.Errorf("call 1001: %v; want ErrScriptEnded", err)
	}
}

func TestZeroScript(t *testing.T) {
	var s bracetest.Script[int, string]
	if _, err := s.Stage(t.Context(), 0); !errors.Is(err, bracetest.ErrScriptEnded) {
		t.Errorf("zero Script: %v; want ErrScriptEnded", err)
	}
}
