// Applies the remembered theme and density before first paint (a classic script in <head>, so
// the page never flashes light for someone who chose dark, nor cards for someone who chose the
// compact list). theme.js and density.js own the toggles; each shares its key with this.
(function () {
  try {
    var mode = JSON.parse(localStorage.getItem("diun-dashboard:theme"));
    if (mode === "light" || mode === "dark") document.documentElement.setAttribute("data-theme", mode);
    if (JSON.parse(localStorage.getItem("diun-dashboard:density")) === "compact") {
      document.documentElement.setAttribute("data-density", "compact");
    }
  } catch (e) {
    /* storage blocked: the system theme, cards */
  }
})();
