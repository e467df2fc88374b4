// Command roomsim runs N synthetic room terminals in one process against a
// citybridge server, with fault scripts and named drills; see package
// citybridge/signaling/terminal/drill and `roomsim -h`.
//
//	roomsim --url https://10.20.0.5:8443 --token TECHNICIAN_TOKEN --conference c1 \
//	        --bridges 116 --scenario flap
package main

import (
	"os"

	"citybridge/signaling/terminal/drill"
)

func main() {
	os.Exit(drill.Main("roomsim", os.Args[1:], os.Stdout, os.Stderr))
}
