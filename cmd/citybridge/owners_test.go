package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"
)

// tryJoin joins conference at base with token and gives the first answer
// (joined, an error or a redirect), closing the connection; it never
// fails the test (the node may be dead or paused).
func tryJoin(base, token, conference string) (wire.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, _, err := wsDial(ctx, &testServer{base: base}, "", nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := wsSend(c, wire.Join{Token: token, Conference: conference}); err != nil {
		return nil, err
	}
	return wsNext(c, 3*time.Second, wire.TypeJoined, wire.TypeError, wire.TypeRedirect)
}

// TestOneOwnerPerConference: three node processes race for ten
// conferences (every conference joined at every node at once, again and
// again), while the owners are killed (SIGKILL, then started again) and
// paused past their lease (SIGSTOP, SIGCONT). Each node's own log says
// when it started serving a conference (taken before it could admit a
// join) and when it stopped (its lease's local deadline, a release, or its
// death): no two of those stretches of one conference overlap, each
// owner's fencing revision is above the one before, and at the end every
// conference is served by exactly one live node.
func TestOneOwnerPerConference(t *testing.T) {
	requireMediaPass(t) // processes and browsers, timed: alone, without the race detector
	const ttl = 2 * time.Second
	pc := newProcCluster(t, "owners", ttl)
	nodes := map[string]*procNode{}
	var gone []*procNode // killed processes, with when
	deaths := map[*procNode]time.Time{}
	for _, name := range []string{"node-1", "node-2", "node-3"} {
		nodes[name] = pc.start(name, 0, "")
	}
	st := pc.store()
	var confs []string
	token, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c, err := st.CreateConference(controlplane.Conference{Title: fmt.Sprintf("race %d", i), State: controlplane.StateOpen, AllBridges: true})
		if err != nil {
			t.Fatal(err)
		}
		confs = append(confs, c.ID)
	}
	var mu sync.Mutex
	paused := map[string]bool{}
	// race joins every conference at every running node at once and says
	// which conferences some node admitted.
	race := func() map[string]bool {
		mu.Lock()
		var live []*procNode
		for name, n := range nodes {
			if !paused[name] {
				live = append(live, n)
			}
		}
		mu.Unlock()
		var wg sync.WaitGroup
		var amu sync.Mutex
		admitted := map[string]bool{}
		for _, c := range confs {
			for _, n := range live {
				wg.Go(func() {
					if m, err := tryJoin(n.base, token, c); err == nil && m.MessageType() == wire.TypeJoined {
						amu.Lock()
						admitted[c] = true
						amu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		return admitted
	}
	// raceUntilServed races until every conference is served somewhere.
	raceUntilServed := func(what string) {
		waitUntil(t, 30*time.Second, "every conference served "+what, func() (bool, string) {
			a := race()
			return len(a) == len(confs), fmt.Sprintf("%d of %d admitted a join", len(a), len(confs))
		})
	}
	raceUntilServed("at the start")
	// owner finds the node whose log says it serves most conferences now.
	busiest := func() *procNode {
		var best *procNode
		bestN := -1
		for _, name := range []string{"node-1", "node-2", "node-3"} {
			n := nodes[name]
			open := 0
			for _, s := range n.servedStretches(time.Time{}) {
				if s.until.IsZero() {
					open++
				}
			}
			if open > bestN {
				best, bestN = n, open
			}
		}
		return best
	}
	for round := range 4 {
		victim := busiest()
		// Racing goes on through the outage: the others take the
		// victim's conferences as soon as its lease is gone.
		stop := make(chan struct{})
		racing := make(chan struct{})
		go func() {
			defer close(racing)
			for {
				select {
				case <-stop:
					return
				default:
				}
				race()
			}
		}()
		if round%2 == 0 {
			t.Logf("round %d: SIGKILL %s", round, victim.name)
			deaths[victim] = victim.kill(t)
			gone = append(gone, victim)
			mu.Lock()
			paused[victim.name] = true // not running until started again
			mu.Unlock()
			raceUntilServed(fmt.Sprintf("after %s was killed", victim.name))
			restarted := pc.start(victim.name, victim.port, "")
			mu.Lock()
			nodes[victim.name] = restarted
			paused[victim.name] = false
			mu.Unlock()
		} else {
			t.Logf("round %d: SIGSTOP %s past its lease", round, victim.name)
			mu.Lock()
			paused[victim.name] = true
			mu.Unlock()
			victim.signal(t, syscall.SIGSTOP)
			raceUntilServed(fmt.Sprintf("while %s was paused", victim.name))
			victim.signal(t, syscall.SIGCONT)
			mu.Lock()
			paused[victim.name] = false
			mu.Unlock()
			waitUntil(t, 10*time.Second, victim.name+" noticed its lease lost", func() (bool, string) {
				for _, l := range victim.lines() {
					if l.Msg == "cluster: lease lost; stopped serving" {
						return true, ""
					}
				}
				return false, "no such line yet"
			})
		}
		close(stop)
		<-racing
	}
	raceUntilServed("at the end")

	// Every stretch of every process, in order of start per conference.
	now := time.Now()
	var all []served
	for _, n := range gone {
		all = append(all, n.servedStretches(deaths[n])...)
	}
	for _, n := range nodes {
		all = append(all, n.servedStretches(now)...)
	}
	// Every join a process admitted lies in one of its stretches of
	// serving that conference: its log's own word, not etcd's.
	admits := 0
	for _, n := range append(slices.Clone(gone), nodes["node-1"], nodes["node-2"], nodes["node-3"]) {
		end := now
		if d, ok := deaths[n]; ok {
			end = d
		}
		stretches := n.servedStretches(end)
		for _, l := range n.lines() {
			if l.Msg != "joined" {
				continue
			}
			admits++
			in := slices.ContainsFunc(stretches, func(s served) bool {
				return s.conference == l.Conference && !l.Time.Before(s.since) && !l.Time.After(s.until)
			})
			if !in {
				t.Errorf("%s admitted a join to %s at %s, when its log says it did not serve it", n.name, l.Conference, l.Time.Format("15:04:05.000"))
			}
		}
	}
	if admits == 0 {
		t.Error("no node's log shows a join admitted")
	}
	slices.SortFunc(all, func(a, b served) int { return a.since.Compare(b.since) })
	byConf := map[string][]served{}
	for _, s := range all {
		byConf[s.conference] = append(byConf[s.conference], s)
	}
	handovers := 0
	for _, c := range confs {
		ss := byConf[c]
		if len(ss) == 0 {
			t.Errorf("%s: no node's log says it served it", c)
			continue
		}
		for i := 1; i < len(ss); i++ {
			prev, next := ss[i-1], ss[i]
			handovers++
			if next.since.Before(prev.until) {
				t.Errorf("%s: %s served it from %s while %s served it until %s (%v together)", c,
					next.node, next.since.Format("15:04:05.000"), prev.node, prev.until.Format("15:04:05.000"), prev.until.Sub(next.since))
			}
			if next.fence <= prev.fence {
				t.Errorf("%s: %s's fence %d is not above %s's %d", c, next.node, next.fence, prev.node, prev.fence)
			}
		}
		// At the end exactly one running process serves it.
		serving := 0
		for _, n := range nodes {
			for _, s := range n.servedStretches(time.Time{}) {
				if s.conference == c && s.until.IsZero() {
					serving++
				}
			}
		}
		if serving != 1 {
			t.Errorf("%s: %d running nodes serve it at the end, want 1", c, serving)
		}
	}
	if handovers < 4 {
		t.Errorf("only %d changes of owner in four rounds of kills and pauses: the test did not test", handovers)
	}
	t.Logf("%d stretches of serving, %d changes of owner, %d joins admitted, none overlapping", len(all), handovers, admits)
}
