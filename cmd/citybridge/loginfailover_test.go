package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/deploy"
)

// TestBrowserConsoleLoginFailover: a chair logged in with a password, no
// link, chairs from node-1 of three nodes on three addresses (127.0.0.1,
// .2 and .3: the login's cookie is sent to node-1's only). node-1 is
// killed: the console joins at the node taking the conference over with
// the pass its first join gave it, and is connected there as the host.
// The pass ends with the login: disabling it sends the console away.
func TestBrowserConsoleLoginFailover(t *testing.T) {
	requireMediaPass(t) // processes and a browser, timed: alone, without the race detector
	pc := newProcCluster(t, "loginfailover", controlplane.DefaultLeaseTTL)
	st := pc.store()
	demo, ok, err := st.SeedDemo(deploy.SampleBridges, "Login failover")
	if err != nil || !ok {
		t.Fatalf("seed: %v %v", ok, err)
	}
	if _, err := st.AddUser("chair", controlplane.RoleHost, "", "chair-password-1"); err != nil {
		t.Fatal(err)
	}
	var nodes []*procNode
	for i, name := range []string{"node-1", "node-2", "node-3"} {
		nodes = append(nodes, pc.start(name, 0, fmt.Sprintf("127.0.0.%d", i+1)))
	}
	conf := demo.Conference.ID
	n1 := nodes[0]
	waitUntil(t, 10*time.Second, "every node registered", func() (bool, string) {
		var v struct{ Nodes []struct{ Name string } }
		if err := getJSON(n1, "/api/nodes", demo.TechnicianToken, &v); err != nil {
			return false, err.Error()
		}
		return len(v.Nodes) == 3, fmt.Sprint(v.Nodes)
	})

	browser := newBrowser(t)
	tb := openTab(t, browser, "console", n1.base+"/admin")
	saveScreenshotsOnFailure(t, tb)
	waitUntil(t, 10*time.Second, "the login form", func() (bool, string) {
		hidden, err := eval[bool](tb, `document.getElementById("login").hidden`)
		return err == nil && !hidden, fmt.Sprint(err)
	})
	setValue(t, tb, "login-name", "chair")
	setValue(t, tb, "login-password", "chair-password-1")
	click(t, tb, `#login button[type=submit]`)
	link := `#conference-rows a[href="/host#c=` + conf + `"]`
	waitUntil(t, 10*time.Second, "the chair's conference list", func() (bool, string) {
		n, err := eval[int](tb, `document.querySelectorAll('`+link+`').length`)
		return n == 1, fmt.Sprint(n, err)
	})
	click(t, tb, link)
	waitUntil(t, 30*time.Second, "the console joined at node-1 with the login alone", func() (bool, string) {
		st, err := eval[string](tb, `window.citybridge && citybridge.state || ""`)
		return st == "connected", fmt.Sprint(st, err)
	})
	if tok, _ := eval[string](tb, `citybridge.session.token || ""`); tok != "" {
		t.Fatalf("the console has a link token (%q): the test wants the login alone", tok)
	}
	if pass, _ := eval[string](tb, `citybridge.session.pass || ""`); pass == "" {
		t.Fatal("the console's join at a cluster's node gave it no pass")
	}
	if owned, _ := st.OwnedBy(n1.name); !slices.Contains(owned, conf) {
		t.Fatalf("node-1 does not serve the conference the console joined there: %v", owned)
	}

	killed := n1.kill(t)
	var at string
	waitUntil(t, 15*time.Second, "the console connected at another node", func() (bool, string) {
		state, _ := eval[string](tb, `citybridge.state`)
		at, _ = eval[string](tb, `citybridge.session.node || ""`)
		return state == "connected" && at != "" && !strings.HasSuffix(n1.base, at), state + " at " + at
	})
	t.Logf("the console, logged in with a password, connected at %s %v after node-1 was killed", at, time.Since(killed).Round(10*time.Millisecond))
	var owner *procNode
	for _, n := range nodes[1:] {
		if strings.HasSuffix(n.base, at) {
			owner = n
		}
	}
	if owner == nil {
		t.Fatalf("the console is at %s, no node of the cluster", at)
	}
	joined := false
	for _, l := range strings.Split(owner.logs.String(), "\n") {
		joined = joined || strings.Contains(l, `"msg":"joined"`) && strings.Contains(l, `"bridge":"hub"`) && strings.Contains(l, `"role":"host"`)
	}
	if !joined {
		t.Errorf("%s's log has no join of the hub as host", owner.name)
	}

	// The pass is the login's: disabling the login ends the console's
	// session at the new owner (its credential check), and the page stops.
	if err := st.SetDisabled("chair", true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the console sent away once its login was disabled", func() (bool, string) {
		bye, _ := eval[string](tb, `citybridge.bye`)
		state, _ := eval[string](tb, `citybridge.state`) // the page's badge
		final, _ := eval[bool](tb, `citybridge.session.final`)
		return bye == "revoked" && state == "ended" && final, fmt.Sprintf("bye %q, state %s, final %v", bye, state, final)
	})
}
