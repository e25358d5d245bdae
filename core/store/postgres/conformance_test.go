package postgres_test

import (
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/storetest"
)

// TestConformance holds the backend to the shared store contract, each
// subtest on its own fresh database.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}
