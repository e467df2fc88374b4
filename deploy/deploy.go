// Package deploy holds what an installation starts from: the sample
// registry of bridges embedded in the binary for the demo seed, and (as
// files beside it) the unit files and configuration samples.
package deploy

import _ "embed"

// SampleBridges is the sample registry: 116 bridges with synthetic names
// (64 communes, 44 wards, 8 special zones).
//
//go:embed bridges.csv
var SampleBridges []byte
