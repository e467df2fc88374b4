import { apply, mountSwitch } from "/static/i18n.js";

apply();
mountSwitch(document.getElementById("lang"));
