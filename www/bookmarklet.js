// The bookmarklet link points at whichever origin served this page (a
// separate file: the page's Content-Security-Policy allows no inline script).
const src = new URL('shell.js', location.href).href;
const code = `(()=>{const s=document.createElement('script');s.type='module';` +
  `s.src=${JSON.stringify(src)};document.head.appendChild(s);})()`;
document.getElementById('bookmarklet').href = 'javascript:' + encodeURIComponent(code);
document.getElementById('origin').textContent = location.origin;
