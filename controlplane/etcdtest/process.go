package etcdtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

// A cluster in a process of its own: the test binary started again, doing
// nothing but run the cluster. The tests that start node processes,
// browsers and dozens of synthetic terminals load the test process so
// that an etcd inside it answers in seconds, which no deployment's etcd,
// on machines of its own, would; in its own process the system schedules
// it beside them.

const childEnv = "CITYBRIDGE_ETCDTEST_CHILD"

// ChildMain runs the cluster when this process is such a child, and never
// returns then: call it first in TestMain.
func ChildMain() {
	size, err := strconv.Atoi(os.Getenv(childEnv))
	if err != nil {
		return
	}
	c, err := Start(size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest child:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(c.Endpoints)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it, or dies
	c.Stop()
	os.Exit(0)
}

// ProcessCluster is a cluster running in a child process.
type ProcessCluster struct {
	Endpoints []string
	cmd       *exec.Cmd
	stdin     io.Closer
}

// StartProcess starts a cluster of size members in a child process.
func StartProcess(size int) (*ProcessCluster, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(size))
	cmd.Stderr = os.Stderr
	// No Pdeathsig (it follows the starting thread, not the process): the
	// child ends when its standard input closes, with the test binary.
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &ProcessCluster{cmd: cmd, stdin: in}
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &p.Endpoints)
	}
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("etcdtest child: %w", err)
	}
	return p, nil
}

// Stop ends the child (it stops its members and removes their data).
func (p *ProcessCluster) Stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Wait()
}

var sharedProc struct {
	sync.Mutex
	c *ProcessCluster
}

// SharedProcess returns the test binary's shared 3-member cluster in a
// child process, started on first use; StopShared stops it too.
func SharedProcess(t testing.TB) *ProcessCluster {
	t.Helper()
	sharedProc.Lock()
	defer sharedProc.Unlock()
	if sharedProc.c == nil {
		c, err := StartProcess(3)
		if err != nil {
			t.Fatal(err)
		}
		sharedProc.c = c
	}
	return sharedProc.c
}
