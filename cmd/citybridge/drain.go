package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"citybridge/controlplane"
)

// drainCommand asks a node of a cluster to hand its conferences over to
// the other nodes and take no new one, for maintenance, and waits until it
// has none (or, with --undo, lets it take conferences again):
//
//	citybridge drain --etcd URLS --node NAME [--undo] [--wait 60s] [TLS and user flags]
//
// The request is kept in etcd until undone, so a node restarted meanwhile
// stays drained. A node stopped with SIGTERM hands its conferences over
// the same way by itself.
func drainCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef etcdFlags
	ef.register(fs, "etcd", getenv)
	node := fs.String("node", getenv("CITYBRIDGE_NODE"), "the node to drain (its --node)")
	undo := fs.Bool("undo", false, "let the node take conferences again")
	wait := fs.Duration("wait", time.Minute, "how long to wait for the node to hand everything over (0: do not wait)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o, err := ef.options()
	if err == nil && !nodeName.MatchString(*node) {
		err = fmt.Errorf("--node %q: the name of a node of the cluster", *node)
	}
	if err != nil {
		fmt.Fprintln(stderr, "citybridge drain:", err)
		return 2
	}
	st, err := controlplane.OpenEtcd(o)
	if err != nil {
		fmt.Fprintln(stderr, "citybridge drain:", err)
		return 1
	}
	defer st.Close()
	if err := st.RequestDrain(*node, !*undo); err != nil {
		fmt.Fprintln(stderr, "citybridge drain:", err)
		return 1
	}
	auditConsole(st, stderr, map[bool]string{false: "drain", true: "drain --undo"}[*undo], *node)
	if *undo {
		fmt.Fprintf(stdout, "%s takes conferences again\n", *node)
		return 0
	}
	fmt.Fprintf(stdout, "asked %s to hand its conferences over\n", *node)
	deadline := time.Now().Add(*wait)
	for *wait > 0 {
		owned, err := st.OwnedBy(*node)
		if err == nil && len(owned) == 0 {
			fmt.Fprintf(stdout, "%s serves no conference\n", *node)
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "citybridge drain: %s still serves %s after %v (is it running? is another node up?)\n",
				*node, strings.Join(owned, ", "), *wait)
			return 1
		}
		time.Sleep(500 * time.Millisecond) // a command's progress, not a test
	}
	return 0
}
