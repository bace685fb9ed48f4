package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/pipeline"
)

type order struct {
	item string
	qty  int
}

func parseOrder(_ context.Context, line string) (order, error) {
	item, qty, ok := strings.Cut(line, "x")
	if !ok {
		return order{}, fmt.Errorf("want ITEMxQTY, got %q", line)
	}
	n, err := strconv.Atoi(qty)
	return order{item: item, qty: n}, err
}

func price(_ context.Context, o order) (int, error) { return 3 * o.qty, nil }

func receipt(_ context.Context, cents int) (string, error) {
	return fmt.Sprintf("total: %d¢", cents), nil
}

// Each Then checks at compile time that the stage takes what the pipeline so
// far produces: string → order → int → string.
func Example() {
	p := pipeline.From("parse", parseOrder)
	q := pipeline.Then(p, "price", price)
	r := pipeline.Then(q, "receipt", receipt)
	fmt.Println(r.Names())

	out, err := r.Run(context.Background(), "applex4")
	fmt.Println(out, err)

	_, err = r.Run(context.Background(), "pear")
	fmt.Println(err)
	var se *pipeline.StageError
	fmt.Println(errors.As(err, &se), se.Name, se.Index)
	// Output:
	// [parse price receipt]
	// total: 12¢ <nil>
	// pipeline: stage 0 "parse": want ITEMxQTY, got "pear"
	// true parse 0
}

// Stage turns a pipeline into an ordinary Stage, decorated by pipeline-wide
// middleware, so it can be wrapped, nested, or passed anywhere a Stage goes.
func ExamplePipeline_Stage() {
	logged := func(next middleware.Stage[string, int]) middleware.Stage[string, int] {
		return func(ctx context.Context, in string) (int, error) {
			fmt.Println("pipeline called with", in)
			return next(ctx, in)
		}
	}
	p := pipeline.Then(pipeline.From("parse", parseOrder), "price", price)
	stage, err := p.Stage(logged)
	if err != nil {
		fmt.Println(err)
		return
	}
	cents, err := stage(context.Background(), "figx2")
	fmt.Println(cents, err)
	// Output:
	// pipeline called with figx2
	// 6 <nil>
}

// A stage name that is empty, or that an earlier stage already has, is a
// build error, returned by Stage and Run. (A nil stage or middleware is
// a programmer error and panics instead.)
func ExamplePipeline_Stage_buildError() {
	p := pipeline.Then(pipeline.From("parse", parseOrder), "", price)
	_, err := p.Stage()
	fmt.Println(err)
	q := pipeline.Then(pipeline.Then(pipeline.From("parse", parseOrder), "price", price), "parse", receipt)
	_, err = q.Run(context.Background(), "applex4")
	fmt.Println(err)
	// Output:
	// pipeline: stage 1 "": empty stage name
	// pipeline: stage 2 "parse": duplicate stage name (also stage 0)
}

// A pipeline's Stage can be a stage of another pipeline. A failure inside
// names the path of stages once, outermost first, and errors.As finds each
// level.
func ExampleStageError() {
	inner, err := pipeline.Then(pipeline.From("parse", parseOrder), "price", price).Stage()
	if err != nil {
		panic(err)
	}
	outer := pipeline.Then(pipeline.From("quote", inner), "receipt", receipt)
	_, err = outer.Run(context.Background(), "pear")
	fmt.Println(err)
	var se *pipeline.StageError
	for e := err; errors.As(e, &se); e = se.Err {
		fmt.Println(se.Index, se.Name)
	}
	// Output:
	// pipeline: stage 0 "quote" / stage 0 "parse": want ITEMxQTY, got "pear"
	// 0 quote
	// 0 parse
}

func ExampleEmpty() {
	p := pipeline.Empty[string]()
	out, err := p.Run(context.Background(), "unchanged")
	fmt.Println(out, err, len(p.Names()))
	// Output: unchanged <nil> 0
}
