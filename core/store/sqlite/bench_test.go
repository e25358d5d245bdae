package sqlite_test

import (
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
	"github.com/defenseunicorns/peat-gateway/core/store/storetest"
)

// BenchmarkStore is the default configuration (synchronous=FULL).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return openTemp(b) })
}

// BenchmarkStoreSyncNormal measures what synchronous=FULL costs.
func BenchmarkStoreSyncNormal(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return openTemp(b, sqlite.WithSynchronous("NORMAL")) })
}
