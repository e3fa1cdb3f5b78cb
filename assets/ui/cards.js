// The cards' buttons, one delegated listener installed once per page: Copy copies the card's
// text; Rewrite puts the candidate's index into the hidden number box and clicks the hidden
// "again" button, whose event writes that candidate again.
element.addEventListener('click', (event) => {
  const again = event.target.closest('.tg-again');
  if (again) {
    const box = document.querySelector('#tg-again-index input');
    box.value = again.dataset.index;
    box.dispatchEvent(new Event('input', { bubbles: true }));
    box.dispatchEvent(new Event('change', { bubbles: true }));
    setTimeout(() => document.querySelector('#tg-again').click(), 50);
    return;
  }
  const button = event.target.closest('.tg-copy');
  if (!button) return;
  const text = button.closest('.tg-card').querySelector('.tg-text').innerText;
  const done = () => { button.textContent = 'Copied 已复制';
                       setTimeout(() => { button.textContent = 'Copy 复制'; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    const area = document.createElement('textarea');
    area.value = text; document.body.appendChild(area); area.select();
    document.execCommand('copy'); area.remove(); done();
  }
});
