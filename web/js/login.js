// Log in (or register) without leaving the page: a modal dialog that resolves with the user,
// or null when it was closed. The server sets the HttpOnly session cookie; the page never
// sees the token. An account whose email is not verified yet (a new one, always) is asked for
// the mailed code in the same dialog: holding seats and buying need it.

import { explain, login, register, resendCode, verifyEmail } from "./api.js";
import { h, say } from "./dom.js";

const RANK = { customer: 0, staff: 1, organizer: 2, admin: 3 };

/**
 * options: reason (why we ask), role (the least role needed), register (offer "create account"),
 * dismissable (false on kiosk/admin pages that are useless without a login).
 */
export function askLogin({ reason = "", role = "customer", register: offerRegister = true, dismissable = true } = {}) {
  return new Promise((resolve) => {
    let mode = "login";
    const message = h("p", { class: "notice", role: "alert", hidden: true });
    const name = h("input", { id: "login-name", name: "name", autocomplete: "name", maxlength: 100 });
    const email = h("input", { id: "login-email", name: "email", type: "email", autocomplete: "username", required: true });
    const password = h("input", {
      id: "login-password", name: "password", type: "password", autocomplete: "current-password",
      required: true, minlength: 8,
    });
    const nameRow = h("p", { class: "field", hidden: true }, h("label", { for: "login-name" }, "Your name"), name);
    const submit = h("button", { type: "submit", class: "primary" }, "Log in");
    const switcher = h("button", { type: "button", class: "link" }, "Create an account");
    const title = h("h2", { id: "login-title" }, "Log in");
    const form = h(
      "form",
      { method: "dialog", class: "login-form" },
      title,
      reason ? h("p", { class: "muted" }, reason) : null,
      nameRow,
      h("p", { class: "field" }, h("label", { for: "login-email" }, "Email"), email),
      h("p", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
      message,
      h("p", { class: "actions" },
        submit,
        dismissable ? h("button", { type: "button", class: "secondary", onclick: () => finish(null) }, "Cancel") : null),
      offerRegister ? h("p", { class: "switch" }, switcher) : null,
    );
    const dialog = h("dialog", { class: "login-dialog", "aria-labelledby": "login-title" }, form);

    function setMode(next) {
      mode = next;
      const registering = mode === "register";
      title.textContent = registering ? "Create an account" : "Log in";
      submit.textContent = registering ? "Create account and log in" : "Log in";
      switcher.textContent = registering ? "I have an account: log in" : "Create an account";
      nameRow.hidden = !registering;
      name.required = registering;
      password.autocomplete = registering ? "new-password" : "current-password";
      say(message, "");
    }
    switcher.addEventListener("click", () => setMode(mode === "login" ? "register" : "login"));

    let loggedIn = null; // once logged in, closing the dialog still resolves with the user
    function finish(user) {
      dialog.close();
      dialog.remove();
      resolve(user);
    }
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      if (dismissable || loggedIn) finish(loggedIn);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      say(message, mode === "register" ? "Creating your account…" : "Logging in…", "info");
      try {
        const user =
          mode === "register"
            ? await register(name.value.trim(), email.value.trim(), password.value)
            : await login(email.value.trim(), password.value);
        if (RANK[user.role] < RANK[role]) {
          say(message, `This page needs a ${role} account; ${user.email} is a ${user.role}.`, "error");
          return;
        }
        if (!user.email_verified) {
          loggedIn = user;
          const step = verificationForm(user, finish);
          form.replaceWith(step.form);
          step.focus();
          return;
        }
        finish(user);
      } catch (error) {
        let text = explain(error);
        if (error.code === "invalid_input" && /password/.test(error.details.path || "")) {
          text = "The password needs at least 8 characters.";
        } else if (error.code === "invalid_input" && /email/.test(error.details.path || "")) {
          text = "That email address does not look right.";
        }
        say(message, text, "error");
      } finally {
        submit.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    email.focus();
  });
}

/** For a user who is logged in but has not entered the mailed code: the code step on its own.
 * Resolves with the user (verified, or as it was when the visitor chose "Later"). */
export function askVerification(user) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "login-dialog", "aria-labelledby": "login-title" });
    function finish(result) {
      dialog.close();
      dialog.remove();
      resolve(result);
    }
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(user);
    });
    const step = verificationForm(user, finish);
    dialog.append(step.form);
    document.body.append(dialog);
    dialog.showModal();
    step.focus();
  });
}

/** The "enter the code from the mail" form; calls done(user) when verified or put off. */
function verificationForm(user, done) {
  const message = h("p", { class: "notice", role: "alert", hidden: true });
  const code = h("input", {
    id: "verify-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
    pattern: "[0-9]{6}", maxlength: 6, required: true,
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Verify email");
  const resend = h("button", { type: "button", class: "link", id: "verify-resend" }, "Send a new code");
  const form = h(
    "form",
    { method: "dialog", class: "login-form verify-form" },
    h("h2", { id: "login-title" }, "Check your email"),
    h("p", { class: "muted" },
      `We mailed a six-digit code to ${user.email}. Enter it to hold seats and buy tickets.`),
    h("p", { class: "field" }, h("label", { for: "verify-code" }, "Code from the mail"), code),
    message,
    h("p", { class: "actions" },
      submit,
      h("button", { type: "button", class: "secondary", onclick: () => done(user) }, "Later")),
    h("p", { class: "switch" }, resend),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    say(message, "Checking the code…", "info");
    try {
      done(await verifyEmail(user.email, code.value.trim()));
    } catch (error) {
      say(message, explain(error), "error");
    } finally {
      submit.disabled = false;
    }
  });
  resend.addEventListener("click", async () => {
    resend.disabled = true;
    try {
      await resendCode(user.email);
      say(message, "A new code is on its way; the one before no longer works.", "ok");
    } catch (error) {
      say(message, explain(error), "error");
    } finally {
      resend.disabled = false;
    }
  });
  return { form, focus: () => code.focus() };
}
