//! Draws an [`App`]: the conversation and input line on the left; pending
//! approvals, the task tree and the ModelHost on the right; the event log
//! and a help line at the bottom.

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Gauge, List, ListItem, ListState, Paragraph};
use ratatui::Frame;
use troupe::config::size::format_bytes as bytes;
use troupe::store::{SubtaskState, TaskState};

use super::app::{App, Focus, HostView, Speaker};

/// Rows of the event log, borders included.
const LOG_ROWS: u16 = 10;

/// The keys, always shown.
const HELP: &str = "Tab pane · Enter send · ↑↓ select/scroll · PgUp/PgDn conversation · \
                    tasks: p pause  r resume  c cancel · a approve  d deny · Esc/Ctrl-C quit";

/// Draws the whole view.
pub(super) fn draw(frame: &mut Frame, app: &App) {
    let [main, log, help] = Layout::vertical([
        Constraint::Min(10),
        Constraint::Length(LOG_ROWS),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(main);
    let [talk, input] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(left);
    let approvals_rows = if app.approvals.is_empty() {
        3
    } else {
        (2 + 2 * app.approvals.len()).min(10) as u16
    };
    let host_rows = 5 + app.host.as_ref().map_or(1, |h| h.models.len().max(1)) as u16;
    let [approvals, tasks, host] = Layout::vertical([
        Constraint::Length(approvals_rows),
        Constraint::Min(4),
        Constraint::Length(host_rows.min(12)),
    ])
    .areas(right);

    conversation(frame, app, talk);
    input_line(frame, app, input);
    approvals_pane(frame, app, approvals);
    task_tree(frame, app, tasks);
    host_pane(frame, app.host.as_ref(), host);
    event_log(frame, app, log);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!(" focus: {} ", focus_name(app.focus)),
                Style::new().add_modifier(Modifier::REVERSED),
            ),
            Span::raw(" "),
            Span::styled(HELP, Style::new().fg(Color::DarkGray)),
        ])),
        help,
    );
}

fn focus_name(focus: Focus) -> &'static str {
    match focus {
        Focus::Input => "input",
        Focus::Tasks => "tasks",
        Focus::Approvals => "approvals",
    }
}

/// A pane's frame; the focused one stands out.
fn pane(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    Block::bordered().title(title).border_style(style)
}

fn conversation(frame: &mut Frame, app: &App, area: Rect) {
    let block = pane(" Conversation ".to_string(), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    let mut lines: Vec<Line> = Vec::new();
    for said in &app.conversation {
        let (prefix, style) = match said.who {
            Speaker::You => ("you> ", Style::new().fg(Color::Cyan)),
            Speaker::Troupe => ("troupe> ", Style::new().fg(Color::Green)),
            Speaker::Note => ("· ", Style::new().fg(Color::DarkGray)),
        };
        for (i, piece) in wrap(&format!("{prefix}{}", said.text), width)
            .into_iter()
            .enumerate()
        {
            lines.push(if i == 0 && piece.starts_with(prefix) {
                Line::from(vec![
                    Span::styled(prefix, style.add_modifier(Modifier::BOLD)),
                    Span::raw(piece[prefix.len()..].to_string()),
                ])
            } else {
                Line::raw(piece)
            });
        }
    }
    let height = usize::from(inner.height);
    let end = lines.len().saturating_sub(app.scroll_back.min(lines.len()));
    let start = end.saturating_sub(height);
    let shown: Vec<Line> = lines.drain(start..end).collect();
    frame.render_widget(Paragraph::new(shown), inner);
}

fn input_line(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::Input;
    let block = pane(" Say something (Enter sends) ".to_string(), focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Only the end of a long line fits.
    let room = usize::from(inner.width.saturating_sub(3));
    let count = app.input.chars().count();
    let visible: String = app.input.chars().skip(count.saturating_sub(room)).collect();
    let cursor_x = inner.x + 2 + visible.chars().count() as u16;
    frame.render_widget(Paragraph::new(format!("> {visible}")), inner);
    if focused {
        frame.set_cursor_position(Position::new(cursor_x, inner.y));
    }
}

fn approvals_pane(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::Approvals;
    if app.approvals.is_empty() {
        let block = pane(" Approvals ".to_string(), focused);
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no tool call waits for approval",
                Style::new().fg(Color::DarkGray),
            ))
            .block(block),
            area,
        );
        return;
    }
    let alert = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    let block = pane(
        format!(
            " Approvals: {} waiting · a approve · d deny ",
            app.approvals.len()
        ),
        focused,
    )
    .border_style(if focused {
        alert.fg(Color::Cyan)
    } else {
        alert
    });
    let items: Vec<ListItem> = app
        .approvals
        .iter()
        .map(|a| {
            ListItem::new(Text::from(vec![
                Line::from(vec![
                    Span::styled(format!("{} ", a.tool), alert),
                    Span::raw(format!("({}) for {}", a.risk, a.task_id)),
                ]),
                Line::raw(format!("  {}", a.args)),
            ]))
        })
        .collect();
    let mut state = ListState::default().with_selected(app.selected_approval());
    frame.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_symbol("▶ ")
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
        &mut state,
    );
}

fn task_tree(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::Tasks;
    let block = pane(format!(" Tasks ({}) ", app.tasks.len()), focused);
    if app.tasks.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no tasks yet: say a job on the left",
                Style::new().fg(Color::DarkGray),
            ))
            .block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = app
        .tasks
        .iter()
        .map(|t| {
            let mut lines = vec![Line::from(vec![
                Span::raw(format!("{} ", t.id)),
                Span::styled(format!("{:<9}", t.state.as_str()), task_style(t.state)),
                Span::raw(format!(" {} tok  ", t.tokens)),
                Span::raw(t.request.clone()),
            ])];
            for s in &t.subtasks {
                let doing = s.doing.as_deref().map(|d| format!(" · {d}"));
                lines.push(Line::from(vec![
                    Span::raw("   "),
                    Span::styled(
                        format!("{} {} {}", subtask_mark(s.state), s.id, s.state.as_str()),
                        subtask_style(s.state),
                    ),
                    Span::raw(format!(" [{}] ", s.kind)),
                    Span::styled(doing.unwrap_or_default(), Style::new().fg(Color::Yellow)),
                    Span::styled(
                        format!("  {}", s.description),
                        Style::new().fg(Color::DarkGray),
                    ),
                ]));
            }
            ListItem::new(Text::from(lines))
        })
        .collect();
    let mut state = ListState::default().with_selected(app.selected_task());
    frame.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_symbol("▶ ")
            .highlight_style(Style::new().add_modifier(Modifier::BOLD)),
        area,
        &mut state,
    );
}

fn task_style(state: TaskState) -> Style {
    let color = match state {
        TaskState::Queued | TaskState::Planning => Color::Blue,
        TaskState::Running => Color::Yellow,
        TaskState::Paused => Color::Magenta,
        TaskState::Succeeded => Color::Green,
        TaskState::Failed => Color::Red,
        TaskState::Cancelled => Color::DarkGray,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

fn subtask_style(state: SubtaskState) -> Style {
    Style::new().fg(match state {
        SubtaskState::Pending => Color::Blue,
        SubtaskState::Running => Color::Yellow,
        SubtaskState::Succeeded => Color::Green,
        SubtaskState::Failed => Color::Red,
        SubtaskState::Cancelled => Color::DarkGray,
    })
}

fn subtask_mark(state: SubtaskState) -> &'static str {
    match state {
        SubtaskState::Pending => "·",
        SubtaskState::Running => "▸",
        SubtaskState::Succeeded => "✓",
        SubtaskState::Failed => "✗",
        SubtaskState::Cancelled => "-",
    }
}

fn host_pane(frame: &mut Frame, host: Option<&HostView>, area: Rect) {
    let block = pane(" ModelHost ".to_string(), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(host) = host else {
        frame.render_widget(Paragraph::new("asking the ModelHost…"), inner);
        return;
    };
    let [summary, gauge, models] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let ratio = if host.budget == 0 {
        0.0
    } else {
        (host.used as f64 / host.budget as f64).clamp(0.0, 1.0)
    };
    frame.render_widget(
        Paragraph::new(format!(
            "memory {} of {} budget · {} loaded{}",
            bytes(host.used),
            bytes(host.budget),
            host.models.len(),
            if host.queued_loads > 0 {
                format!(" · {} loads waiting", host.queued_loads)
            } else {
                String::new()
            }
        )),
        summary,
    );
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(format!("{:.1}% of budget", ratio * 100.0))
            .gauge_style(Style::new().fg(gauge_color(ratio)).bg(Color::Black)),
        gauge,
    );
    let mut lines: Vec<Line> = host
        .models
        .iter()
        .map(|m| {
            Line::from(vec![
                Span::styled(format!("{:<20}", m.name), Style::new().fg(Color::Cyan)),
                Span::raw(format!(
                    " {:>10}  slots {}/{} busy  {} queued{}",
                    bytes(m.bytes),
                    m.busy,
                    m.slots,
                    m.queued,
                    if m.pinned { "  pinned" } else { "" }
                )),
            ])
        })
        .collect();
    for name in &host.loading {
        lines.push(Line::styled(
            format!("{name:<20} loading…"),
            Style::new().fg(Color::Yellow),
        ));
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "no model loaded",
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Paragraph::new(lines), models);
}

fn gauge_color(ratio: f64) -> Color {
    if ratio > 0.9 {
        Color::Red
    } else if ratio > 0.7 {
        Color::Yellow
    } else {
        Color::Green
    }
}

fn event_log(frame: &mut Frame, app: &App, area: Rect) {
    let block = pane(" Events ".to_string(), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = usize::from(inner.height);
    let lines: Vec<Line> = app
        .log
        .iter()
        .skip(app.log.len().saturating_sub(height))
        .map(|l| {
            Line::from(vec![
                Span::styled(
                    format!("{} ", clock(l.time_ms)),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::raw(l.text.clone()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// `HH:MM:SS` (UTC) of a time in ms since the epoch.
pub(super) fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `text` cut into lines of at most `width` characters, at spaces where
/// it can be.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut len = 0;
        for word in paragraph.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            if len > 0 && len + 1 + word.len() > width {
                out.push(std::mem::take(&mut line));
                len = 0;
            }
            if len > 0 {
                line.push(' ');
                len += 1;
            }
            // A word longer than a line is cut.
            while len + word.len() > width {
                let rest = word.split_off(width - len);
                line.extend(word);
                out.push(std::mem::take(&mut line));
                len = 0;
                word = rest;
            }
            len += word.len();
            line.extend(word);
        }
        out.push(line);
    }
    out
}
