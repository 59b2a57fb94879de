package main

import "github.com/brokkr/brokkr/plugins/sdk"

func main() {
	sdk.Serve(sdk.Options{Compaction: Policy{}})
}
