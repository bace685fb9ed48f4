package pipeline_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/brace-go/brace/pipeline"
)

var sink int

//go:noinline
func incNoInline(_ context.Context, in int) (int, error) { return in + 1, nil }

// BenchmarkDirect5 is the baseline: five stages called one after another by
// hand, with the same error checks a caller would write.
func BenchmarkDirect5(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v := i
		for range 5 {
			var err error
			if v, err = incNoInline(ctx, v); err != nil {
				b.Fatal(err)
			}
		}
		sink = v
	}
}

// BenchmarkPipeline measures pipelines of 1 and 5 stages; the per-stage
// overhead is (Pipeline/5 - Direct5) / 5.
func BenchmarkPipeline(b *testing.B) {
	for _, n := range []int{1, 5} {
		p := pipeline.From("s0", incNoInline)
		for i := 1; i < n; i++ {
			p = pipeline.Then(p, "s"+strconv.Itoa(i), incNoInline)
		}
		stage, err := p.Stage()
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = stage(ctx, i)
			}
		})
	}
}
