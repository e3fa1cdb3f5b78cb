(key, item) => confirm('Delete this model for good? 确定永久删除这个模型？') ? [key, item] : [key, null]
