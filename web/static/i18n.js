// The one string catalogue of every page: Vietnamese (the default) and
// English. Elements carry data-i18n="key"; code calls t("key", {n: 3}).

const catalogue = {
  vi: {
    app_name: "citybridge",
    lang_switch: "English",
    title_host: "Bảng điều khiển chủ trì",
    title_room: "Điểm cầu",
    title_rooms: "Danh sách điểm cầu",
    title_index: "Hội nghị truyền hình citybridge",
    index_text: "Hãy mở đường dẫn riêng đã được cấp cho bạn: đường dẫn chủ trì, đường dẫn điểm cầu hoặc danh sách điểm cầu của kỹ thuật viên.",
    hub: "Điểm cầu trung tâm",
    self_view: "Hình ảnh tại chỗ",
    my_preview: "Hình ảnh điểm cầu trung tâm",
    wall: "Các điểm cầu",
    conference: "Hội nghị",
    waiting_hub: "Đang chờ tín hiệu từ điểm cầu trung tâm…",
    state_starting: "Đang khởi động…",
    state_connecting: "Đang kết nối…",
    state_connected: "Đã kết nối",
    state_absent: "Chưa tham gia",
    state_left: "Đã rời",
    state_disconnected: "Mất kết nối với máy chủ",
    state_failed: "Kết nối hình ảnh bị lỗi",
    joined_count: "{n}/{total} điểm cầu đã kết nối",
    enable_sound: "Bật âm thanh",
    camera_error: "Không mở được camera hoặc micrô: {msg}",
    open_terminal: "Mở thiết bị đầu cuối",
    link_failed: "Không tạo được đường dẫn: {msg}",
    kind_commune: "Xã",
    kind_ward: "Phường",
    kind_special_zone: "Đặc khu",
    kind_hub: "Trung tâm",
    col_bridge: "Điểm cầu",
    col_kind: "Loại",
    col_area: "Khu vực",
    col_state: "Trạng thái",
    bye_replaced: "Điểm cầu này vừa được mở trên một thiết bị khác.",
    bye_server_shutdown: "Máy chủ đang khởi động lại.",
    bye_left: "Đã rời hội nghị.",
    err_token_required: "Đường dẫn thiếu mã truy cập.",
    err_token_invalid: "Mã truy cập không hợp lệ hoặc đã bị thu hồi.",
    err_wrong_conference: "Mã truy cập thuộc về một hội nghị khác.",
    err_not_invited: "Điểm cầu này không được mời tham dự hội nghị.",
    err_conference_closed: "Hội nghị chưa mở hoặc đã kết thúc.",
    err_role_cannot_join: "Vai trò này không tham gia hội nghị.",
    err_forbidden: "Bạn không có quyền thực hiện thao tác này.",
    err_internal: "Lỗi máy chủ. Vui lòng báo kỹ thuật viên.",
    err_other: "Lỗi: {msg}",
    layer_best: "chất lượng tốt nhất",
    layer_bandwidth: "giảm theo đường truyền",
    layer_pinned: "kỹ thuật viên giới hạn",
    layer_limit: "ảnh thu nhỏ",
    layer_paused: "Đường truyền quá yếu: tạm dừng hình ảnh, vẫn giữ âm thanh. Hình ảnh sẽ tự trở lại.",
    quality: "{res} · {why}",
    state_reconnecting: "Đang kết nối lại…",
    state_dropped: "Mất kết nối",
    counts: "{joined} đã vào · {reconnecting} đang kết nối lại · {dropped} mất kết nối · {never} chưa vào (trên {total})",
    give_floor: "Cho phát biểu",
    take_floor: "Thu hồi quyền phát biểu",
    mute: "Tắt micrô",
    unmute: "Bật micrô",
    mute_all: "Tắt micrô tất cả",
    lock: "Khoá hội nghị",
    unlock: "Mở khoá hội nghị",
    start: "Bắt đầu hội nghị",
    end: "Kết thúc hội nghị",
    end_confirm: "Kết thúc hội nghị cho tất cả các điểm cầu?",
    share_screen: "Chia sẻ màn hình",
    stop_share: "Dừng chia sẻ",
    hands: "Xin phát biểu",
    no_hands: "Chưa có điểm cầu nào xin phát biểu.",
    raise_hand: "Xin phát biểu",
    lower_hand: "Rút lại",
    hand_raised: "Đã gửi yêu cầu phát biểu, đang chờ chủ trì.",
    mic_off: "Micrô đang tắt: chủ trì sẽ cho phép phát biểu.",
    mic_on: "Micrô đang bật.",
    mic_short: "micrô bật",
    reconnecting_for: "Mất kết nối {s} giây — đang tự động kết nối lại. Không cần thao tác gì.",
    link_good: "tốt",
    link_fair: "giảm chất lượng",
    link_poor: "kém",
    link_paused: "tạm dừng hình",
    floor_yours: "Điểm cầu đang được phát biểu.",
    floor_holder: "Đang phát biểu: {name}",
    locked_note: "Hội nghị đã khoá: điểm cầu mới không vào được.",
    speaking: "đang nói",
    density: "Cỡ ô",
    conf_state_open: "Đã mở",
    conf_state_live: "Đang diễn ra",
    conf_state_ended: "Đã kết thúc",
    conf_state_scheduled: "Đã lên lịch",
    bye_ended: "Hội nghị đã kết thúc.",
    attendance: "Điểm danh",
    attendance_csv: "Tải CSV",
    col_connected: "Thời gian kết nối",
    col_drops: "Số lần mất kết nối",
    col_worst: "Đường truyền kém nhất",
    col_intervals: "Các khoảng tham dự",
    never_joined: "không tham dự",
    err_no_floor: "Chỉ điểm cầu đang được phát biểu mới bật được micrô.",
    err_conference_locked: "Hội nghị đã khoá, không nhận thêm điểm cầu.",
    err_conference_ended: "Hội nghị đã kết thúc.",
    err_unknown_bridge: "Không có điểm cầu này trong hội nghị.",
    err_bad_state: "Không chuyển được trạng thái hội nghị.",
  },
  en: {
    app_name: "citybridge",
    lang_switch: "Tiếng Việt",
    title_host: "Host console",
    title_room: "Bridge point",
    title_rooms: "Bridge points",
    title_index: "citybridge video conference",
    index_text: "Open the link you were given: the host link, your room terminal's link, or the technicians' list of bridge points.",
    hub: "City hub",
    self_view: "This room",
    my_preview: "Hub camera",
    wall: "Bridge points",
    conference: "Conference",
    waiting_hub: "Waiting for the city hub…",
    state_starting: "Starting…",
    state_connecting: "Connecting…",
    state_connected: "Connected",
    state_absent: "Not joined",
    state_left: "Left",
    state_disconnected: "Lost contact with the server",
    state_failed: "Media connection failed",
    joined_count: "{n}/{total} bridge points connected",
    enable_sound: "Turn sound on",
    camera_error: "Cannot open the camera or microphone: {msg}",
    open_terminal: "Open terminal",
    link_failed: "Could not make a link: {msg}",
    kind_commune: "Commune",
    kind_ward: "Ward",
    kind_special_zone: "Special zone",
    kind_hub: "Hub",
    col_bridge: "Bridge point",
    col_kind: "Kind",
    col_area: "Area",
    col_state: "State",
    bye_replaced: "This bridge point was just opened on another device.",
    bye_server_shutdown: "The server is restarting.",
    bye_left: "Left the conference.",
    err_token_required: "The link has no access token.",
    err_token_invalid: "The access token is not valid or was revoked.",
    err_wrong_conference: "The access token belongs to another conference.",
    err_not_invited: "This bridge point is not invited to the conference.",
    err_conference_closed: "The conference is not open, or has ended.",
    err_role_cannot_join: "This role does not join conferences.",
    err_forbidden: "You may not do this.",
    err_internal: "Server error. Please tell a technician.",
    err_other: "Error: {msg}",
    layer_best: "best quality",
    layer_bandwidth: "reduced for the link",
    layer_pinned: "capped by a technician",
    layer_limit: "thumbnail",
    layer_paused: "The link is too weak: video paused, sound continues. Video comes back by itself.",
    quality: "{res} · {why}",
    state_reconnecting: "Reconnecting…",
    state_dropped: "Lost",
    counts: "{joined} joined · {reconnecting} reconnecting · {dropped} dropped · {never} never joined (of {total})",
    give_floor: "Give floor",
    take_floor: "Take the floor back",
    mute: "Mute",
    unmute: "Unmute",
    mute_all: "Mute all",
    lock: "Lock conference",
    unlock: "Unlock conference",
    start: "Start conference",
    end: "End conference",
    end_confirm: "End the conference for every bridge?",
    share_screen: "Share screen",
    stop_share: "Stop sharing",
    hands: "Raised hands",
    no_hands: "No bridge has asked to speak.",
    raise_hand: "Ask to speak",
    lower_hand: "Withdraw",
    hand_raised: "Asked to speak; waiting for the host.",
    mic_off: "Microphone off: the host gives the floor.",
    mic_on: "Microphone on.",
    mic_short: "mic on",
    reconnecting_for: "Connection lost {s} s ago — reconnecting by itself. Nothing to do.",
    link_good: "good",
    link_fair: "reduced",
    link_poor: "poor",
    link_paused: "video paused",
    floor_yours: "This room has the floor.",
    floor_holder: "Speaking: {name}",
    locked_note: "The conference is locked: no new bridges can join.",
    speaking: "speaking",
    density: "Tile size",
    conf_state_open: "Open",
    conf_state_live: "Live",
    conf_state_ended: "Ended",
    conf_state_scheduled: "Scheduled",
    bye_ended: "The conference has ended.",
    attendance: "Attendance",
    attendance_csv: "Download CSV",
    col_connected: "Connected",
    col_drops: "Drops",
    col_worst: "Worst link",
    col_intervals: "Intervals",
    never_joined: "never joined",
    err_no_floor: "Only the room holding the floor can turn its microphone on.",
    err_conference_locked: "The conference is locked: no new bridges.",
    err_conference_ended: "The conference has ended.",
    err_unknown_bridge: "No such bridge in this conference.",
    err_bad_state: "The conference cannot change to that state.",
  },
};

const params = new URLSearchParams(location.search);
let lang = params.get("lang") || localStorage.getItem("citybridge.lang") || "vi";
if (!catalogue[lang]) lang = "vi";

export function currentLang() {
  return lang;
}

// t returns the string for key in the current language, with {name}
// placeholders filled from vars.
export function t(key, vars = {}) {
  const s = catalogue[lang][key] ?? catalogue.vi[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

// errorText turns a server error code into a sentence.
export function errorText(code, message) {
  const key = "err_" + code;
  return key in catalogue.vi ? t(key) : t("err_other", { msg: message || code });
}

// apply fills every [data-i18n] element under root.
export function apply(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
}

// mountSwitch wires a button that toggles the language.
export function mountSwitch(button, onChange) {
  button.textContent = t("lang_switch");
  button.addEventListener("click", () => {
    lang = lang === "vi" ? "en" : "vi";
    localStorage.setItem("citybridge.lang", lang);
    button.textContent = t("lang_switch");
    apply();
    onChange?.();
  });
}

export const languages = Object.keys(catalogue);
export { catalogue };
