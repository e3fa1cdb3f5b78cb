() => {
  let key = localStorage.getItem('textgen-library-key');
  if (!key || !/^[0-9a-f]{64}$/.test(key)) {
    key = Array.from(crypto.getRandomValues(new Uint8Array(32)), b => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem('textgen-library-key', key);
  }
  return [localStorage.getItem('textgen-finetune-job'), key];
}
