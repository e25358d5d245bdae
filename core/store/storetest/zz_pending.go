package storetest

var (
	concurrencyTests []subtest
)
