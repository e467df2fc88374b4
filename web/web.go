// Package web holds the browser pages, embedded in the binary: the host
// console (/host), the room terminal (/room), the technicians' index of
// room terminals (/rooms) and link dashboard (/tech). Plain HTML, CSS and
// ES modules: no build step, nothing fetched from outside the server (the
// one library, uPlot for the dashboard's charts, is vendored in
// static/vendor with its licence).
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Static is the embedded file tree (static/...).
func Static() fs.FS {
	sub, _ := fs.Sub(files, "static")
	return sub
}

// pages maps the pages' paths to their files.
var pages = map[string]string{
	"/":      "index.html",
	"/host":  "host.html",
	"/room":  "room.html",
	"/rooms": "rooms.html",
	"/admin": "admin.html",
	"/tech":  "tech.html",
}

// Register mounts the pages and /static/ on mux.
func Register(mux *http.ServeMux) {
	static := Static()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	for path, file := range pages {
		pattern := "GET " + path
		if path == "/" {
			pattern = "GET /{$}"
		}
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, file)
		})
	}
}
