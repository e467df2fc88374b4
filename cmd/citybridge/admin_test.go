package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// setValue sets an input's value in tb.
func setValue(t *testing.T, tb *tab, id, value string) {
	t.Helper()
	if _, err := eval[any](tb, fmt.Sprintf(`document.getElementById(%q).value = %q`, id, value)); err != nil {
		t.Fatalf("%s: set %s: %v", tb.name, id, err)
	}
}

// TestBrowserAdminPage: an administrator logs in on /admin, imports a
// registry file with a bad row (the page shows the row's line and that
// nothing was imported), adds a host login and logs out; the host logs
// in, opens the console from the conference list and chairs it on the
// strength of the login cookie alone (no link token). The recordings:
// the administrator sees the conference's files with their download
// links and deletes them (the page asks first); the host sees the links
// and no delete button.
func TestBrowserAdminPage(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	if err := ts.store.SetPassword("admin", "admin-password-1"); err != nil {
		t.Fatal(err)
	}
	browser := newBrowser(t)
	tb := openTab(t, browser, "admin", ts.base+"/admin")
	saveScreenshotsOnFailure(t, tb)
	login := func(name, pw string) {
		t.Helper()
		waitUntil(t, 10*time.Second, "the login form", func() (bool, string) {
			hidden, err := eval[bool](tb, `document.getElementById("login").hidden`)
			return err == nil && !hidden, fmt.Sprint(err)
		})
		setValue(t, tb, "login-name", name)
		setValue(t, tb, "login-password", pw)
		click(t, tb, `#login button[type=submit]`)
		waitUntil(t, 10*time.Second, name+" logged in", func() (bool, string) {
			who, err := eval[string](tb, `citybridge.me ? citybridge.me.user : ""`)
			return who == name, fmt.Sprint(who, err)
		})
	}
	recorded := fakeRecording(t, ts, ts.demo.Conference.ID)
	login("admin", "admin-password-1")

	csv := "id,name,kind,area,contact\nward-950,Phường 950,ward,,\nward-951,Phường 951,borough,,\n"
	if _, err := eval[any](tb, fmt.Sprintf(`(() => { const dt = new DataTransfer();
		dt.items.add(new File([%q], "bad.csv", {type: "text/csv"}));
		document.getElementById("import-file").files = dt.files; })()`, csv)); err != nil {
		t.Fatal(err)
	}
	click(t, tb, `#import button[type=submit]`)
	waitUntil(t, 10*time.Second, "the import report", func() (bool, string) {
		rep, err := eval[string](tb, `document.getElementById("import-report").textContent`)
		return err == nil && strings.Contains(rep, "3") && strings.Contains(rep, "borough"), rep
	})
	if _, err := ts.store.Bridge("ward-950"); err == nil {
		t.Error("a file with a bad row imported its good row without the partial flag")
	}

	setValue(t, tb, "user-name", "chair")
	setValue(t, tb, "user-role", "host")
	setValue(t, tb, "user-password", "chair-password-1")
	click(t, tb, `#new-user button[type=submit]`)
	waitUntil(t, 10*time.Second, "the new host in the user list", func() (bool, string) {
		n, err := eval[int](tb, `document.querySelectorAll('#user-rows tr[data-user="chair"]').length`)
		return n == 1, fmt.Sprint(n, err)
	})
	conf := ts.demo.Conference.ID
	row := `#recording-rows tr[data-conference="` + conf + `"]`
	listed := func(file string) {
		t.Helper()
		waitUntil(t, 10*time.Second, "the recording's download link", func() (bool, string) {
			href, err := eval[string](tb, `(document.querySelector('`+row+` a[download]') || {}).href || ""`)
			return strings.HasSuffix(href, "/api/conferences/"+conf+"/recordings/"+file), fmt.Sprint(href, err)
		})
	}
	listed(recorded.File)
	if _, err := eval[any](tb, `window.confirm = () => true`); err != nil {
		t.Fatal(err)
	}
	click(t, tb, row+` button.danger`)
	waitUntil(t, 10*time.Second, "the recordings deleted", func() (bool, string) {
		_, err := os.Stat(filepath.Join(ts.cfg.Data, "recordings", conf))
		return os.IsNotExist(err), fmt.Sprint(err)
	})
	recorded = fakeRecording(t, ts, conf)

	click(t, tb, "#logout")
	login("chair", "chair-password-1")
	listed(recorded.File)
	if n, err := eval[int](tb, `document.querySelectorAll('`+row+` button.danger').length`); n != 0 || err != nil {
		t.Errorf("a host is offered to delete recordings: %d buttons (%v)", n, err)
	}
	waitUntil(t, 10*time.Second, "the conference list with the console link", func() (bool, string) {
		n, err := eval[int](tb, `document.querySelectorAll('#conference-rows a[href="/host#c=`+conf+`"]').length`)
		return n == 1, fmt.Sprint(n, err)
	})
	click(t, tb, `#conference-rows a[href="/host#c=`+conf+`"]`)
	waitUntil(t, 30*time.Second, "the host console joined with the login alone", func() (bool, string) {
		st, err := eval[string](tb, `window.citybridge && citybridge.state || ""`)
		return st == "connected", fmt.Sprint(st, err)
	})
	if errs, _ := eval[[]map[string]any](tb, `citybridge.errors`); len(errs) != 0 {
		t.Errorf("the host console reported errors: %v", errs)
	}
}
