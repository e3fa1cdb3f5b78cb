(id) => { if (id) localStorage.setItem('textgen-finetune-job', id); return []; }
