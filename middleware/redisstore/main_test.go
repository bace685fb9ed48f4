package redisstore

import (
	"testing"

	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"go.uber.org/goleak"
)

// The package's tests share one redis-server (internal/redistest); each
// test uses keys of its own. Fault tests start servers of their own.
func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
